using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Tests.Kernels;

public unsafe class DirectConvolutionTests
{
    // (C, H, W, KH, KW, stride, padding, OC): the network's conv1 and conv2, odd sizes, stride 2, a
    // non-square kernel, channel counts below, just above and between the register tile's widths, a 1x1
    // kernel, and outputs smaller than one tile of positions.
    public static TheoryData<int, int, int, int, int, int, int, int> Shapes => new()
    {
        { 1, 28, 28, 5, 5, 1, 2, 32 },
        { 32, 14, 14, 5, 5, 1, 2, 64 },
        { 3, 7, 9, 3, 3, 2, 1, 5 },
        { 2, 5, 4, 3, 2, 1, 0, 33 },
        { 5, 3, 3, 3, 3, 1, 1, 70 },
        { 1, 1, 1, 1, 1, 1, 0, 1 },
        { 4, 6, 11, 1, 1, 1, 0, 17 },
        { 7, 2, 3, 3, 3, 1, 1, 48 },
        // At most 16 output channels: the narrow tile (16 positions x 16 channels).
        { 16, 8, 8, 3, 3, 1, 1, 16 },
        { 3, 9, 10, 3, 3, 1, 1, 16 },
        { 2, 5, 7, 3, 3, 2, 1, 12 },
        { 16, 17, 5, 3, 3, 1, 1, 15 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardImageMatchesReference(int c, int h, int w, int kh, int kw, int stride, int padding, int oc)
    {
        var g = new ConvGeometry(1, c, h, w, kh, kw, stride, padding);
        var rng = new Rng((ulong)(c * 10007 + h * 101 + w * 13 + oc));
        int patch = g.PatchLength, plane = g.OH * g.OW;
        // The padded image is read as given (its border holds values here, not zeros); the slack past the
        // weight is NaN, which must reach no output.
        var padded = TestData.Uniform(rng, (h + 2 * padding) * (w + 2 * padding) * c);
        var weightT = TestData.Uniform(rng, patch * oc + DirectConvolution.WeightSlack);
        weightT.AsSpan(patch * oc).Fill(float.NaN);
        var expected = new float[plane * oc];
        DirectConvolutionReference.ForwardImage(padded, g, weightT, oc, expected);
        const int guard = 40;
        var actual = new float[plane * oc + guard];
        actual.AsSpan(plane * oc).Fill(-7f);
        fixed (float* p = padded, wt = weightT, rows = actual)
            DirectConvolution.ForwardImage(p, g, wt, oc, rows);
        // Float32 FMA chains against float64 sums of up to `patch` terms of magnitude <= 1.
        TestData.AssertClose(expected, actual.AsSpan(0, plane * oc), 1e-6 * (patch + 1), 1e-5, $"C={c} {h}x{w} k={kh}x{kw} s={stride} p={padding} OC={oc}");
        Assert.All(actual[(plane * oc)..], v => Assert.Equal(-7f, v));
    }

    [Fact]
    public void NarrowTileSumsInTheSameOrderAsTheWideOne()
    {
        // 16 output channels take the 16 x 16 tile, 17 the 8 x 32 one; each output is the same chain of
        // FMAs, so the first 16 channels agree to the bit.
        var g = new ConvGeometry(1, 6, 9, 7, 3, 3, 1, 1);
        var rng = new Rng(61);
        int patch = g.PatchLength, plane = g.OH * g.OW;
        var padded = TestData.Uniform(rng, (g.H + 2) * (g.W + 2) * g.C);
        var wide = TestData.Uniform(rng, patch * 17 + DirectConvolution.WeightSlack);
        var narrow = new float[patch * 16 + DirectConvolution.WeightSlack];
        for (int d = 0; d < patch; d++) wide.AsSpan(d * 17, 16).CopyTo(narrow.AsSpan(d * 16));
        var rows16 = new float[plane * 16];
        var rows17 = new float[plane * 17];
        fixed (float* p = padded, w16 = narrow, w17 = wide, r16 = rows16, r17 = rows17)
        {
            DirectConvolution.ForwardImage(p, g, w16, 16, r16);
            DirectConvolution.ForwardImage(p, g, w17, 17, r17);
        }
        for (int q = 0; q < plane; q++)
            Assert.Equal(rows17.AsSpan(q * 17, 16).ToArray(), rows16.AsSpan(q * 16, 16).ToArray());
    }
}
