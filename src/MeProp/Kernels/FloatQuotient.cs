using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// Sixteen integer divisions at once through a float quotient, for the positions of a sparse gradient
/// (AVX-512 has no integer division; sixteen scalar ones cost ~25 cycles each).
/// </summary>
internal static class FloatQuotient
{
    /// <summary>
    /// Bound on the dividends <see cref="Divide"/> is exact for: below 2^22 the rounded reciprocal and the
    /// rounded product each err by at most half an ulp, so the truncated quotient never overshoots and
    /// is at most one low (e.g. at a multiple of 41), which the remainder check corrects.
    /// </summary>
    public const int MaxDividend = 1 << 22;

    /// <summary>dividend / divisor (truncated) for 0 &lt;= dividend &lt; <see cref="MaxDividend"/>, divisor &gt; 0; reciprocal = 1f / divisor.</summary>
    public static Vector512<int> Divide(Vector512<int> dividend, Vector512<int> divisor, Vector512<float> reciprocal)
    {
        var quotient = Vector512.ConvertToInt32(Vector512.ConvertToSingle(dividend) * reciprocal);
        // The comparison's true lanes are -1: subtracting them adds the missing one.
        return quotient - Vector512.GreaterThanOrEqual(dividend - quotient * divisor, divisor);
    }
}
