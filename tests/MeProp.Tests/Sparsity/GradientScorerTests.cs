using MeProp.Sparsity;

namespace MeProp.Tests.Sparsity;

/// <summary>
/// The SIMD row scorer against the per-entry formula of <see cref="GradientScorer.Score"/>: scores and running
/// averages to the bit, the non-zero count, and the candidates at or above a floor in index order, on rows
/// shorter than, equal to and longer than a vector, with tails.
/// </summary>
public unsafe class GradientScorerTests
{
    [Theory]
    [InlineData(1, 0f)]
    [InlineData(5, 0.6f)]
    [InlineData(15, 0f)]
    [InlineData(16, 0.6f)]
    [InlineData(17, 0.6f)]
    [InlineData(25, 0.6f)]
    [InlineData(33, 0f)]
    [InlineData(49, 0.6f)]
    [InlineData(196, 0.6f)]
    [InlineData(785, 0.9f)]
    public void ScoreRowMatchesTheEntryFormula(int length, float decay)
    {
        var rng = new Random(length);
        var dy = new float[length];
        var running = new float[length];
        for (int i = 0; i < length; i++)
        {
            dy[i] = rng.Next(4) == 0 ? 0f : (float)(rng.NextDouble() - 0.5) * (rng.Next(8) == 0 ? 1e-31f : 1f);
            running[i] = rng.Next(5) == 0 ? 1e-30f : (float)rng.NextDouble();
        }
        var expectedRunning = (float[])running.Clone();
        var expectedScores = new float[length];
        for (int i = 0; i < length; i++)
        {
            float magnitude = MathF.Abs(dy[i]);
            expectedScores[i] = decay > 0
                ? expectedRunning[i] = GradientScorer.FlushTiny(MathF.FusedMultiplyAdd(decay, expectedRunning[i], (1 - decay) * magnitude))
                : magnitude;
        }
        float floor = 0.25f;
        var expectedCandidates = Enumerable.Range(0, length).Where(i => expectedScores[i] >= floor).ToArray();

        var scores = new float[length];
        // The candidate buffers need a vector of slack: whole vectors are stored past the count.
        var indices = new int[length + 16];
        var candidateScores = new float[length + 16];
        long nonZero;
        GradientScorer.Candidates candidates;
        fixed (float* pDy = dy, pRunning = running, pScores = scores, pCandidateScores = candidateScores)
        fixed (int* pIndices = indices)
        {
            candidates = new GradientScorer.Candidates { Indices = pIndices, Scores = pCandidateScores, FloorBits = BitConverter.SingleToInt32Bits(floor) };
            nonZero = GradientScorer.ScoreRow(pDy, decay > 0 ? pRunning : null, pScores, length, decay, &candidates, indexBase: 1000, next: 0);
        }
        Assert.Equal(dy.Count(v => v != 0), nonZero);
        Assert.Equal(expectedScores, scores);
        if (decay > 0) Assert.Equal(expectedRunning, running);
        Assert.Equal(expectedCandidates.Select(i => 1000 + i), indices.Take(candidates.Count));
        Assert.Equal(expectedCandidates.Select(i => expectedScores[i]), candidateScores.Take(candidates.Count));
    }
}
