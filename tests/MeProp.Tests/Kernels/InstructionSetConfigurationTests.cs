using System.Runtime.Intrinsics;

namespace MeProp.Tests.Kernels;

/// <summary>
/// CI re-runs the suite with instruction sets switched off (<c>.ci/run</c>) and says which through
/// MEPROP_EXPECTED_VECTORS, so that a switch the runtime ignores fails here instead of silently testing
/// the 512-bit paths again (.NET 10 reads DOTNET_EnableAVX512, no longer DOTNET_EnableAVX512F).
/// </summary>
public class InstructionSetConfigurationTests
{
    [Fact]
    public void WidestVectorsMatchWhatTheRunExpects()
    {
        string? expected = Environment.GetEnvironmentVariable("MEPROP_EXPECTED_VECTORS");
        string actual = Vector512.IsHardwareAccelerated ? "512" : Vector256.IsHardwareAccelerated ? "256" : Vector128.IsHardwareAccelerated ? "128" : "scalar";
        if (expected is null) return;
        Assert.Equal(expected, actual);
    }
}
