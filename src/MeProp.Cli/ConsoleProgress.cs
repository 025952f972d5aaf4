using System.Diagnostics;
using MeProp.Training;

namespace MeProp.Cli;

/// <summary>
/// Shows training progress: a redrawn bar with steps/s and loss on a terminal, and plain lines (every
/// tenth of an epoch) when the output is redirected, so logs stay readable.
/// </summary>
internal sealed class ConsoleProgress : ITrainingObserver
{
    private readonly bool _interactive = !Console.IsOutputRedirected;
    private int _epoch, _epochs, _steps;
    private long _start, _lastDraw;

    public void EpochStarted(int epoch, int epochs, int steps)
    {
        (_epoch, _epochs, _steps) = (epoch, epochs, steps);
        _start = _lastDraw = Stopwatch.GetTimestamp();
    }

    public void StepCompleted(int step, double meanLoss)
    {
        long now = Stopwatch.GetTimestamp();
        if (_interactive)
        {
            if (step != _steps && Stopwatch.GetElapsedTime(_lastDraw, now).TotalMilliseconds < 200) return;
            _lastDraw = now;
            const int width = 30;
            int filled = (int)((long)width * step / _steps);
            Console.Write($"\repoch {_epoch}/{_epochs} [{new string('#', filled)}{new string('.', width - filled)}] {step}/{_steps} {Rate(step, now),7:F1} steps/s  loss {meanLoss:F4} ");
            if (step == _steps) Console.WriteLine();
        }
        else if (step == _steps || step % Math.Max(1, _steps / 10) == 0)
        {
            Console.WriteLine($"epoch {_epoch}/{_epochs} step {step}/{_steps} {Rate(step, now):F1} steps/s loss {meanLoss:F4}");
        }
    }

    private double Rate(int step, long now) => step / Math.Max(1e-9, Stopwatch.GetElapsedTime(_start, now).TotalSeconds);

    public void EpochCompleted(EpochMetrics m)
    {
        foreach (string warning in m.Warnings ?? []) Console.Error.WriteLine($"warning: epoch {m.Epoch}: {warning}");
        string dev = m.DevAccuracy is double d ? $"{d:F4}" : "n/a";
        Console.WriteLine($"epoch {m.Epoch}: train loss {m.TrainLoss:F4}  dev accuracy {dev}  test accuracy {m.TestAccuracy:F4}  " +
                          $"({m.EpochSeconds:F1} s: forward {m.ForwardSeconds:F1}, backward {m.BackwardSeconds:F1}, update {m.UpdateSeconds:F1}, eval {m.EvalSeconds:F1})");
    }
}
