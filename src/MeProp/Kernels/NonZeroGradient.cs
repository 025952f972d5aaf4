using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// The non-zero entries of a dense dL/dy, for a backward that is exact yet reads only them (after ReLU
/// and max pooling most entries are zero). Legend: dy is [N, U, P], U output units (conv channels or
/// linear outputs), P positions per example (OH·OW, or 1 for a linear layer). An entry equal to zero
/// (either sign) adds nothing to dW, db or dx, so dropping it changes no result beyond the order of
/// the float additions; NaN and infinities are not zero and are kept.
/// </summary>
public static unsafe class NonZeroGradient
{
    /// <summary>Number of entries of <paramref name="values"/> that are not zero (NaN counts as not zero).</summary>
    public static long Count(ReadOnlySpan<float> values)
    {
        fixed (float* p = values) return Count(p, values.Length);
    }

    private static long Count(float* p, int length)
    {
        long zeros = 0;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= length; i += 16)
                zeros += BitOperations.PopCount(Vector512.Equals(Vector512.Load(p + i), Vector512<float>.Zero).ExtractMostSignificantBits());
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= length; i += 8)
                zeros += BitOperations.PopCount(Vector256.Equals(Vector256.Load(p + i), Vector256<float>.Zero).ExtractMostSignificantBits());
        for (; i < length; i++) if (p[i] == 0) zeros++;
        return length - zeros;
    }

    private struct Job
    {
        public float* Dy, Values;
        public int* Positions, Counts;
        public int N, Units, Plane, Capacity;
    }

    /// <summary>
    /// Fills <paramref name="result"/> with every non-zero entry of dy [N, U, P]: unit u's entries are
    /// (n·P + p, dy[n, u, p]) in ascending position, room for all N·P per unit. Units are taken by the
    /// next free worker; each unit's list is written by one worker in position order, so the result does
    /// not depend on the thread count. <see cref="SparseGradient.Selected"/> and
    /// <see cref="SparseGradient.NonZeroBefore"/> are both the number of entries found.
    /// </summary>
    public static void Gather(ReadOnlySpan<float> dy, int n, int units, int plane, SparseGradient result, WorkerPool pool)
    {
        if (n < 0 || units < 0 || plane < 1 || dy.Length < (long)n * units * plane)
            throw new ArgumentException($"non-zero gather: dy of {dy.Length} values cannot be [{n}, {units}, {plane}]");
        int capacity = checked(n * plane);
        result.Reset(units, capacity, capacity);
        fixed (float* pdy = dy, values = result.Values)
        fixed (int* positions = result.Positions, counts = result.Counts)
        {
            var job = new Job { Dy = pdy, Values = values, Positions = positions, Counts = counts, N = n, Units = units, Plane = plane, Capacity = capacity };
            pool.RunDynamic(units, &GatherUnit, &job);
        }
        long found = result.Count;
        result.Selected = found;
        result.NonZeroBefore = found;
    }

    private static void GatherUnit(void* args, int u, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int plane = j.Plane, count = 0;
        int* positions = j.Positions + (long)u * j.Capacity;
        float* values = j.Values + (long)u * j.Capacity;
        for (int n = 0; n < j.N; n++)
        {
            float* row = j.Dy + ((long)n * j.Units + u) * plane;
            int first = n * plane, p = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; p + 16 <= plane; p += 16)
                {
                    // Bits of the lanes that are not zero, taken lowest first.
                    uint mask = ~(uint)Vector512.Equals(Vector512.Load(row + p), Vector512<float>.Zero).ExtractMostSignificantBits() & 0xFFFF;
                    while (mask != 0)
                    {
                        int lane = BitOperations.TrailingZeroCount(mask);
                        positions[count] = first + p + lane;
                        values[count++] = row[p + lane];
                        mask &= mask - 1;
                    }
                }
            for (; p < plane; p++)
                if (row[p] != 0)
                {
                    positions[count] = first + p;
                    values[count++] = row[p];
                }
        }
        j.Counts[u] = count;
    }
}
