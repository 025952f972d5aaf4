using MeProp.Layers;

namespace MeProp.Tests.Reference;

/// <summary>
/// Float64 oracles for the layers, written as plain loops straight from the definitions (no im2col,
/// no GEMM, no SIMD), so that a bug in the optimized path cannot be mirrored here.
/// Legend: x [N, C, H, W] NCHW row-major; conv weight [OC, C, K, K] (PyTorch layout); linear weight
/// [Out, In]; OH = (H + 2P - K) / S + 1 (floor).
/// </summary>
internal static class ReferenceOps
{
    /// <summary>Training-mode batch norm in float64: batch mean, biased variance; x [N, C, plane] (plane 1 for [N, C]).</summary>
    public static double[] BatchNormTraining(double[] x, double[] gamma, double[] beta, int n, int c, int plane, double epsilon)
    {
        var y = new double[x.Length];
        for (int ch = 0; ch < c; ch++)
        {
            double mean = 0, variance = 0;
            for (int i = 0; i < n; i++) for (int p = 0; p < plane; p++) mean += x[(i * c + ch) * plane + p];
            mean /= n * plane;
            for (int i = 0; i < n; i++) for (int p = 0; p < plane; p++) variance += Math.Pow(x[(i * c + ch) * plane + p] - mean, 2);
            variance /= n * plane;
            double scale = gamma[ch] / Math.Sqrt(variance + epsilon);
            for (int i = 0; i < n; i++)
            for (int p = 0; p < plane; p++)
            {
                int k = (i * c + ch) * plane + p;
                y[k] = scale * (x[k] - mean) + beta[ch];
            }
        }
        return y;
    }

    public static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }

    /// <summary>Σ a[i]·b[i] in float64.</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"dot: lengths {a.Length} and {b.Length}");
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    public static int OutputSize(int size, int kernel, int stride, int padding) => (size + 2 * padding - kernel) / stride + 1;

    /// <summary>
    /// Direct convolution (cross-correlation): y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v]·x[n,c,i·S-P+u, j·S-P+v],
    /// with x zero outside the image. Returns y [N, OC, OH, OW].
    /// </summary>
    public static double[] Conv2d(double[] x, int n, int c, int h, int w, double[] weight, double[] bias,
        int outChannels, int kernel, int stride, int padding)
    {
        int oh = OutputSize(h, kernel, stride, padding), ow = OutputSize(w, kernel, stride, padding);
        var y = new double[n * outChannels * oh * ow];
        for (int b = 0; b < n; b++)
        for (int o = 0; o < outChannels; o++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            double sum = bias[o];
            for (int ci = 0; ci < c; ci++)
            for (int u = 0; u < kernel; u++)
            for (int v = 0; v < kernel; v++)
            {
                int row = i * stride - padding + u, col = j * stride - padding + v;
                if (row < 0 || row >= h || col < 0 || col >= w) continue;
                sum += weight[((o * c + ci) * kernel + u) * kernel + v] * x[((b * c + ci) * h + row) * w + col];
            }
            y[((b * outChannels + o) * oh + i) * ow + j] = sum;
        }
        return y;
    }

    /// <summary>
    /// The patch matrix: cols[(n·OH + i)·OW + j, (c·K + u)·K + v] = x[n, c, i·S-P+u, j·S-P+v] (zero outside).
    /// </summary>
    public static double[] Im2Col(double[] x, int n, int c, int h, int w, int kernel, int stride, int padding)
    {
        int oh = OutputSize(h, kernel, stride, padding), ow = OutputSize(w, kernel, stride, padding);
        int patch = c * kernel * kernel;
        var cols = new double[n * oh * ow * patch];
        for (int b = 0; b < n; b++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        for (int ci = 0; ci < c; ci++)
        for (int u = 0; u < kernel; u++)
        for (int v = 0; v < kernel; v++)
        {
            int row = i * stride - padding + u, col = j * stride - padding + v;
            double value = row < 0 || row >= h || col < 0 || col >= w ? 0 : x[((b * c + ci) * h + row) * w + col];
            cols[((b * oh + i) * ow + j) * patch + (ci * kernel + u) * kernel + v] = value;
        }
        return cols;
    }

    /// <summary>y[i, o] = b[o] + Σ_k x[i, k]·w[o, k]; x [N, In], w [Out, In].</summary>
    public static double[] Linear(double[] x, int n, int inFeatures, double[] weight, double[] bias, int outFeatures)
    {
        var y = new double[n * outFeatures];
        for (int i = 0; i < n; i++)
        for (int o = 0; o < outFeatures; o++)
        {
            double sum = bias[o];
            for (int k = 0; k < inFeatures; k++) sum += x[i * inFeatures + k] * weight[o * inFeatures + k];
            y[i * outFeatures + o] = sum;
        }
        return y;
    }

    /// <summary>
    /// Max pooling, KxK windows, stride S, no padding, floor mode. argmax holds the index within the
    /// plane of the first maximum in row-major window order (a later equal value does not replace it).
    /// </summary>
    public static (double[] Y, int[] Argmax) MaxPool2d(double[] x, int n, int c, int h, int w, int kernel, int stride)
    {
        int oh = (h - kernel) / stride + 1, ow = (w - kernel) / stride + 1;
        var y = new double[n * c * oh * ow];
        var argmax = new int[y.Length];
        for (int p = 0; p < n * c; p++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            int best = -1;
            double bestValue = double.NegativeInfinity;
            for (int u = 0; u < kernel; u++)
            for (int v = 0; v < kernel; v++)
            {
                int index = (i * stride + u) * w + j * stride + v;
                double value = x[p * h * w + index];
                if (best < 0 || value > bestValue) { best = index; bestValue = value; }
            }
            y[(p * oh + i) * ow + j] = bestValue;
            argmax[(p * oh + i) * ow + j] = best;
        }
        return (y, argmax);
    }

    public static double Activate(ActivationKind kind, double x) => kind switch
    {
        ActivationKind.Relu => x > 0 ? x : 0,
        ActivationKind.Sigmoid => 1 / (1 + Math.Exp(-x)),
        ActivationKind.Tanh => Math.Tanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public static double[] Activation(ActivationKind kind, double[] x) => Array.ConvertAll(x, v => Activate(kind, v));

    /// <summary>Mean over the batch of -log softmax(logits_i)[label_i]; logits [N, C].</summary>
    public static double SoftmaxCrossEntropy(double[] logits, int n, int classes, ReadOnlySpan<int> labels)
    {
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < classes; j++) max = Math.Max(max, logits[i * classes + j]);
            double sum = 0;
            for (int j = 0; j < classes; j++) sum += Math.Exp(logits[i * classes + j] - max);
            total += max + Math.Log(sum) - logits[i * classes + labels[i]];
        }
        return total / n;
    }

    /// <summary>
    /// One Adam step in float64 with PyTorch's formula (t counts from 1):
    /// m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε).
    /// </summary>
    public static void AdamStep(double[] p, double[] g, double[] m, double[] v, int t,
        double lr, double beta1, double beta2, double epsilon)
    {
        double bias1 = 1 - Math.Pow(beta1, t), bias2 = 1 - Math.Pow(beta2, t);
        for (int i = 0; i < p.Length; i++)
        {
            m[i] = beta1 * m[i] + (1 - beta1) * g[i];
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
            p[i] -= lr / bias1 * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(bias2) + epsilon);
        }
    }
}
