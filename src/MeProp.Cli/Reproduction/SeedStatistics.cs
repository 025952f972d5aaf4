namespace MeProp.Cli.Reproduction;

/// <summary>
/// Summary statistics over a handful of seeds: mean, sample standard deviation (n - 1), range, and the
/// 95% confidence interval of a paired difference (Student's t with n - 1 degrees of freedom).
/// </summary>
internal static class SeedStatistics
{
    public static double Mean(IReadOnlyList<double> values) => values.Count == 0 ? double.NaN : values.Sum() / values.Count;

    /// <summary>Sample standard deviation; NaN for fewer than two values.</summary>
    public static double StandardDeviation(IReadOnlyList<double> values)
    {
        if (values.Count < 2) return double.NaN;
        double mean = Mean(values);
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }

    /// <summary>
    /// Mean of a - b over paired values and the half-width of its 95% interval (NaN for fewer than two
    /// pairs): a paired t interval, since the same seed gives both runs the same initial weights and data order.
    /// </summary>
    public static (double Mean, double HalfWidth) PairedDifference(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"paired lists differ in length ({a.Count} and {b.Count})");
        var differences = a.Zip(b, (x, y) => x - y).ToList();
        double mean = Mean(differences);
        if (differences.Count < 2) return (mean, double.NaN);
        double halfWidth = StudentT975(differences.Count - 1) * StandardDeviation(differences) / Math.Sqrt(differences.Count);
        return (mean, halfWidth);
    }

    // The 0.975 quantile of Student's t for 1..30 degrees of freedom (standard tables).
    private static readonly double[] T975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    /// <summary>The 0.975 quantile of Student's t with <paramref name="degrees"/> degrees of freedom.</summary>
    public static double StudentT975(int degrees)
    {
        if (degrees < 1) throw new ArgumentOutOfRangeException(nameof(degrees), $"degrees of freedom must be >= 1, got {degrees}");
        if (degrees <= T975.Length) return T975[degrees - 1];
        // Beyond the table, the Cornish-Fisher expansion around the normal quantile (error < 1e-4 here).
        const double z = 1.959964;
        double n = degrees;
        return z + (z * z * z + z) / (4 * n) + (5 * Math.Pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n);
    }
}
