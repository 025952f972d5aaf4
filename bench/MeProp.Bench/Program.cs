using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

// Picks benchmarks by BenchmarkDotNet's command line: --filter '*Gemm*', --job short, --list flat, ...
// Shape labels are longer than BenchmarkDotNet's default 20-character parameter column.
var config = DefaultConfig.Instance.WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(40));
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
