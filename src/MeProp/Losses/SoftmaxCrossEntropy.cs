using MeProp.Tensors;

namespace MeProp.Losses;

/// <summary>
/// Softmax cross-entropy averaged over the batch, as PyTorch's F.cross_entropy.
/// logits [N, C], labels [N] in [0, C). loss = (1/N) Σ_i (logsumexp(logits_i) - logits_i[label_i]);
/// its gradient, consistent with the mean, is dlogits_i = (softmax(logits_i) - onehot(label_i)) / N.
/// </summary>
public sealed class SoftmaxCrossEntropy
{
    private readonly Tensor _gradient = new(0);

    /// <summary>dL/dlogits of the last <see cref="Forward"/>, shape [N, C]; owned by this object.</summary>
    public Tensor Gradient => _gradient;

    /// <summary>Returns the mean loss and fills <see cref="Gradient"/>.</summary>
    public double Forward(Tensor logits, ReadOnlySpan<int> labels)
    {
        if (logits.Rank != 2) throw new ArgumentException($"cross-entropy: logits must be [N, C], got {logits.ShapeText}");
        int n = logits.Dim(0), c = logits.Dim(1);
        if (labels.Length < n) throw new ArgumentException($"cross-entropy: {n} logits rows but {labels.Length} labels");
        _gradient.Reshape(n, c);
        var x = logits.Span;
        var g = _gradient.Span;
        double total = 0;
        float inverseN = 1f / n;
        for (int i = 0; i < n; i++)
        {
            var row = x.Slice(i * c, c);
            var grad = g.Slice(i * c, c);
            int label = labels[i];
            if ((uint)label >= (uint)c) throw new ArgumentException($"cross-entropy: label {label} of row {i} is outside [0, {c})");
            float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
            double sum = 0;
            for (int j = 0; j < c; j++) sum += Math.Exp(row[j] - max);
            double logSum = max + Math.Log(sum);
            total += logSum - row[label];
            for (int j = 0; j < c; j++) grad[j] = (float)Math.Exp(row[j] - logSum) * inverseN;
            grad[label] -= inverseN;
        }
        return total / n;
    }

    /// <summary>Number of rows whose largest logit is at the label (first maximum wins ties).</summary>
    public static int CountCorrect(Tensor logits, ReadOnlySpan<int> labels)
    {
        int n = logits.Dim(0), c = logits.Dim(1), correct = 0;
        var x = logits.Span;
        for (int i = 0; i < n; i++)
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(x.Slice(i * c, c)) == labels[i]) correct++;
        return correct;
    }
}
