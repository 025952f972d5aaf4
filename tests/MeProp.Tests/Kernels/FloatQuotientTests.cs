using System.Runtime.Intrinsics;
using MeProp.Kernels;

namespace MeProp.Tests.Kernels;

/// <summary>The float-quotient division against integer division, at multiples and their neighbours up to the bound.</summary>
public class FloatQuotientTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(28)]
    [InlineData(41)]
    [InlineData(196)]
    [InlineData(784)]
    [InlineData(1023)]
    [InlineData(4097)]
    [InlineData(65521)]
    public void DividesExactlyBelowTheBound(int divisor)
    {
        var rng = new Random(divisor);
        var dividends = new List<int> { 0, 1, divisor - 1, divisor, divisor + 1, FloatQuotient.MaxDividend - 1 };
        for (int i = 0; i < 2000; i++)
        {
            int multiple = rng.Next(FloatQuotient.MaxDividend / divisor) * divisor;
            dividends.AddRange([multiple, multiple + divisor - 1, Math.Max(0, multiple - 1), rng.Next(FloatQuotient.MaxDividend)]);
        }
        var values = dividends.Where(d => d is >= 0 and < FloatQuotient.MaxDividend).ToArray();
        var vDivisor = Vector512.Create(divisor);
        var vReciprocal = Vector512.Create(1f / divisor);
        for (int start = 0; start + 16 <= values.Length; start += 16)
        {
            var quotient = FloatQuotient.Divide(Vector512.Create(values.AsSpan(start, 16)), vDivisor, vReciprocal);
            for (int lane = 0; lane < 16; lane++)
                Assert.True(values[start + lane] / divisor == quotient[lane], $"{values[start + lane]} / {divisor}: got {quotient[lane]}");
        }
    }
}
