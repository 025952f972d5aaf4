namespace MeProp.Tensors;

/// <summary>
/// A small seeded generator (xoshiro256**) whose whole state is four ulongs, so it can be saved in a
/// checkpoint and restored exactly. Used for initialisation, shuffling, dropout and random-k.
/// </summary>
public sealed class Rng
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Seeds the state through SplitMix64, as the xoshiro authors recommend.</summary>
    public Rng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    /// <summary>A generator for an independent stream derived from this seed and a stream number.</summary>
    public static Rng ForStream(ulong seed, ulong stream) => new(seed ^ (0x9E3779B97F4A7C15UL * (stream + 1)));

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform integer in [0, bound), without modulo bias (Lemire's method).</summary>
    public int NextInt(int bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound));
        ulong b = (ulong)bound;
        UInt128 m = (UInt128)NextUInt64() * b;
        ulong low = (ulong)m;
        if (low < b)
        {
            ulong threshold = (0 - b) % b;
            while (low < threshold)
            {
                m = (UInt128)NextUInt64() * b;
                low = (ulong)m;
            }
        }
        return (int)(m >> 64);
    }

    /// <summary>Uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform float in [low, high).</summary>
    public float NextUniform(float low, float high) => (float)(low + (high - low) * NextDouble());

    /// <summary>Standard normal sample (Box-Muller, one value per call).</summary>
    public double NextNormal()
    {
        double u1 = 1.0 - NextDouble();
        double u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>Fisher-Yates shuffle in place.</summary>
    public void Shuffle(Span<int> values)
    {
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }

    /// <summary>The state, for checkpoints.</summary>
    public ulong[] GetState() => [_s0, _s1, _s2, _s3];

    /// <summary>Restores a state from <see cref="GetState"/>.</summary>
    public void SetState(ReadOnlySpan<ulong> state)
    {
        if (state.Length != 4) throw new ArgumentException("RNG state must be 4 values");
        if ((state[0] | state[1] | state[2] | state[3]) == 0) throw new ArgumentException("RNG state must not be all zero");
        (_s0, _s1, _s2, _s3) = (state[0], state[1], state[2], state[3]);
    }
}
