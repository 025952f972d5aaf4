using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Tests.Kernels;

public unsafe class DirectWeightGradientTests
{
    // (C, H, W, KH, KW, stride, padding, OC): the convolution shapes of DirectConvolutionTests (the paper's
    // layers, odd sizes, stride 2, non-square kernels, 1x1), then runs or channel counts below, at and above
    // whole tiles (KW·C of 5, 9, 16, 48, 50; OC of 1, 6, 15, 16, 17, 33).
    private static TheoryData<int, int, int, int, int, int, int, int> MoreShapes => new()
    {
        { 16, 9, 7, 1, 1, 2, 0, 6 },
        { 16, 10, 10, 3, 3, 2, 1, 15 },
        { 10, 5, 6, 5, 5, 1, 2, 16 },
        { 25, 4, 5, 3, 2, 1, 1, 12 },
    };

    public static IEnumerable<object[]> Shapes => DirectConvolutionTests.Shapes.Concat(MoreShapes);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AddImage_MatchesReference(int c, int h, int w, int kh, int kw, int stride, int padding, int oc)
    {
        const int images = 3;
        var g = new ConvGeometry(1, c, h, w, kh, kw, stride, padding);
        var rng = new Rng((ulong)(c * 7919 + h * 113 + w * 17 + oc));
        int image = (h + 2 * padding) * (w + 2 * padding) * c, rows = g.OH * g.OW * oc, run = kw * c;
        // The padded images are read as given (their borders hold values here); what lies past the last
        // image and the last dY row is NaN, which may reach only the padding of the sums.
        var padded = TestData.Uniform(rng, images * image + SparseBackward.ReadSlack);
        padded.AsSpan(images * image).Fill(float.NaN);
        var dyRows = TestData.Uniform(rng, images * rows + DirectWeightGradient.RowSlack);
        dyRows.AsSpan(images * rows).Fill(float.NaN);
        var expected = new float[oc * kh * run];
        for (int n = 0; n < images; n++)
            DirectWeightGradientReference.AddImage(padded.AsSpan(n * image, image), g, dyRows.AsSpan(n * rows, rows), oc, expected);
        // Sums start from values already there, as a caller's accumulation would.
        var start = TestData.Uniform(rng, DirectWeightGradient.SumsLength(g, oc));
        var actual = (float[])start.Clone();
        fixed (float* p = padded, d = dyRows, s = actual)
            for (int n = 0; n < images; n++)
                DirectWeightGradient.AddImage(p + n * image, g, d + n * rows, oc, s, 0, 1);
        int runPadded = DirectWeightGradient.RunPadded(g);
        var compared = new float[expected.Length];
        for (int o = 0; o < oc; o++)
            for (int ky = 0; ky < kh; ky++)
                for (int j = 0; j < run; j++)
                {
                    int at = (o * kh + ky) * runPadded + j;
                    compared[(o * kh + ky) * run + j] = actual[at] - start[at];
                }
        // Float32 FMA chains against float64 sums of images x positions terms of magnitude <= 1.
        int terms = images * g.OH * g.OW;
        TestData.AssertClose(expected, compared, 1e-6 * (terms + 2), 1e-5, $"C={c} {h}x{w} k={kh}x{kw} s={stride} p={padding} OC={oc}");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TilesSplitAcrossTasks_GiveTheSameBits(int c, int h, int w, int kh, int kw, int stride, int padding, int oc)
    {
        const int images = 2;
        var g = new ConvGeometry(1, c, h, w, kh, kw, stride, padding);
        var rng = new Rng((ulong)(c * 31 + h * 7 + oc));
        int image = (h + 2 * padding) * (w + 2 * padding) * c, rows = g.OH * g.OW * oc;
        var padded = TestData.Uniform(rng, images * image + SparseBackward.ReadSlack);
        var dyRows = TestData.Uniform(rng, images * rows + DirectWeightGradient.RowSlack);
        var one = new float[DirectWeightGradient.SumsLength(g, oc)];
        var three = new float[one.Length];
        fixed (float* p = padded, d = dyRows, s1 = one, s3 = three)
            for (int n = 0; n < images; n++)
            {
                DirectWeightGradient.AddImage(p + n * image, g, d + n * rows, oc, s1, 0, 1);
                for (int task = 2; task >= 0; task--)
                    DirectWeightGradient.AddImage(p + n * image, g, d + n * rows, oc, s3, task, 3);
            }
        Assert.Equal(one, three);
    }
}
