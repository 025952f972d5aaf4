namespace MeProp.Kernels;

/// <summary>
/// Obviously-correct twin of <see cref="FusedLinearAdam"/>: the whole dW and dX with float64
/// accumulators, then Adam's formulas in float64 on every weight (no flush of tiny moments).
/// Test oracle only.
/// </summary>
internal static class FusedLinearAdamReference
{
    public static void Run(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int n, int outFeatures, int inFeatures,
        Span<float> weight, Span<float> expAvg, Span<float> expAvgSq, in AdamStep step, Span<float> dx)
    {
        if (!dx.IsEmpty)
            for (int t = 0; t < n; t++)
                for (int i = 0; i < inFeatures; i++)
                {
                    double sum = 0;
                    for (int o = 0; o < outFeatures; o++) sum += (double)dy[t * outFeatures + o] * weight[o * inFeatures + i];
                    dx[t * inFeatures + i] = (float)sum;
                }
        for (int o = 0; o < outFeatures; o++)
            for (int i = 0; i < inFeatures; i++)
            {
                double g = 0;
                for (int t = 0; t < n; t++) g += (double)dy[t * outFeatures + o] * x[t * inFeatures + i];
                int e = o * inFeatures + i;
                double m = step.Beta1 * (double)expAvg[e] + (1 - (double)step.Beta1) * g;
                double v = step.Beta2 * (double)expAvgSq[e] + (1 - (double)step.Beta2) * g * g;
                expAvg[e] = (float)m;
                expAvgSq[e] = (float)v;
                weight[e] = (float)(weight[e] - step.StepSize * m / (Math.Sqrt(v) * step.InverseRootBias2 + step.Epsilon));
            }
    }
}
