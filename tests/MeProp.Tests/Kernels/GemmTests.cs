using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

public class GemmTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 1, 37, 5 }, { 7, 1, 300 }, { 8, 32, 256 }, { 9, 33, 257 }, { 13, 17, 19 },
        { 97, 65, 3 }, { 200, 70, 513 }, { 10, 1024, 31 }, { 64, 100, 600 }, { 5, 3, 0 },
        // Transposed B at small m: row groups of ten (or four) over depth chunks of 768 with a tail.
        { 10, 6, 3136 }, { 11, 5, 800 }, { 16, 9, 1601 },
        // Small C over a long depth: the depth is split into partial products (a conv layer's dW).
        { 32, 25, 7841 }, { 5, 70, 2600 },
        // A few dozen rows against four or more times as many columns: computed as Cᵀ = op(B)ᵀ · op(A)ᵀ.
        { 17, 100, 300 }, { 65, 263, 131 }, { 100, 1024, 37 }, { 128, 513, 257 },
        // Tasks of eight or more column panels pack A too (a short last sliver, a depth tail).
        { 499, 263, 300 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesReferenceForAllTransposes(int m, int n, int k)
    {
        using var pool = new WorkerPool(3);
        var gemm = new Gemm(pool);
        var rng = new Rng((ulong)(m * 1000003 + n * 1009 + k));
        foreach (bool transA in new[] { false, true })
        foreach (bool transB in new[] { false, true })
        foreach (bool accumulate in new[] { false, true })
        {
            // Leading dimensions wider than needed, to catch stride mistakes.
            int lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2;
            var a = TestData.Uniform(rng, (transA ? k : m) * lda + 1);
            var b = TestData.Uniform(rng, (transB ? n : k) * ldb + 1);
            var c0 = TestData.Uniform(rng, m * ldc);
            var expected = (float[])c0.Clone();
            var actual = (float[])c0.Clone();
            GemmReference.Multiply(transA, transB, m, n, k, a, lda, b, ldb, expected, ldc, accumulate);
            gemm.Multiply(transA, transB, m, n, k, a, lda, b, ldb, actual, ldc, accumulate);
            // float32 products summed in float32: error grows like sqrt(k) * eps * magnitude.
            TestData.AssertClose(expected, actual, 1e-5 * (k + 1), 1e-5, $"m={m} n={n} k={k} tA={transA} tB={transB} acc={accumulate}");
        }
    }

    [Theory]
    [InlineData(301, 77, 530, false)]
    [InlineData(32, 25, 7841, false)]
    [InlineData(10, 500, 784, true)]   // a linear layer's forward at a small batch: dot products by column pairs
    [InlineData(10, 128, 3136, true)]  // the same over a depth cut into chunks
    [InlineData(7, 201, 1601, true)]
    [InlineData(24, 90, 700, false)]   // the swapped product
    public void ResultDoesNotDependOnThreadCount(int m, int n, int k, bool transB)
    {
        var rng = new Rng(7);
        var a = TestData.Uniform(rng, m * k);
        var b = TestData.Uniform(rng, k * n);
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3, 5 })
        {
            using var pool = new WorkerPool(threads);
            var c = new float[m * n];
            new Gemm(pool).Multiply(false, transB, m, n, k, a, k, b, transB ? k : n, c, n, false);
            if (first is null) first = c;
            else Assert.Equal(first, c);
        }
    }

    [Fact]
    public void RejectsTooShortSpans()
    {
        using var pool = new WorkerPool(1);
        var gemm = new Gemm(pool);
        var e = Assert.Throws<ArgumentException>(() => gemm.Multiply(false, false, 4, 4, 4, new float[15], 4, new float[16], 4, new float[16], 4, false));
        Assert.Contains("GEMM A", e.Message);
    }
}
