using MeProp.Sparsity;

namespace MeProp.Tests.Sparsity;

public class MePropOptionsTests
{
    [Fact]
    public void KeepCountIsCeilingOfRatioTimesSizeClampedToOneAndSize()
    {
        // The expected value is computed in decimal, where 0.07 x 100 is exactly 7 (in double it is
        // 7.000000000000001, whose naive ceiling would be 8; 0.14, 0.28, 0.55, 0.56 do the same).
        double[] ratios = [1e-6, 0.001, 0.01, 0.05, 0.07, 0.1, 0.123, 0.14, 0.2, 0.28, 0.3, 0.5, 0.55, 0.56, 0.7, 0.75, 0.9, 0.999, 1.0];
        foreach (double ratio in ratios)
        {
            var options = new MePropOptions { Ratio = ratio };
            Assert.Equal(0, options.KeepCount(0));
            var sizes = Enumerable.Range(1, 400).Concat([1000, 1024, 3136, 10000, 12544, 100000, 1234567, 10000000]);
            foreach (int n in sizes)
            {
                int expected = (int)Math.Clamp(Math.Ceiling((decimal)ratio * n), 1, n);
                Assert.True(expected == options.KeepCount(n), $"ratio {ratio} n {n}: KeepCount {options.KeepCount(n)}, expected {expected}");
            }
        }
    }

    [Theory]
    [InlineData(0.1, 30, 3)]
    [InlineData(0.07, 100, 7)]
    [InlineData(0.28, 25, 7)]
    [InlineData(0.1, 31, 4)]
    [InlineData(0.05, 20, 1)]
    [InlineData(0.05, 21, 2)]
    [InlineData(0.3, 10, 3)]
    [InlineData(0.01, 5, 1)]
    [InlineData(1.0, 7, 7)]
    [InlineData(0.05, 50176, 2509)]
    public void KeepCountHandPicked(double ratio, int n, int expected) =>
        Assert.Equal(expected, new MePropOptions { Ratio = ratio }.KeepCount(n));

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.1)]
    [InlineData(1.0000001)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public void RatioOutsideZeroOneRejected(double ratio)
    {
        var options = new MePropOptions { Ratio = ratio };
        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains("ratio", e.Message);
        Assert.Throws<ArgumentException>(() => new GradientSparsifier("conv1", options, convolutional: true, seed: 1));
    }

    [Theory]
    [InlineData(-0.01)]
    [InlineData(1.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void DecayOutsideZeroOneRejected(double decay)
    {
        var options = new MePropOptions { Ratio = 0.1, Decay = decay };
        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains("decay", e.Message);
        Assert.Throws<ArgumentException>(() => new GradientSparsifier("fc1", options, convolutional: false, seed: 1));
    }

    [Theory]
    [InlineData(1e-9, 0.0)]
    [InlineData(0.05, 0.0)]
    [InlineData(1.0, 0.999)]
    [InlineData(0.5, 0.5)]
    public void BoundaryValuesAccepted(double ratio, double decay)
    {
        var options = new MePropOptions { Ratio = ratio, Decay = decay };
        options.Validate();
        _ = new GradientSparsifier("conv1", options, convolutional: true, seed: 1);
    }

    [Theory]
    [InlineData(SelectionPolicy.PerExample, true)]
    [InlineData(SelectionPolicy.Unified, true)]
    [InlineData(SelectionPolicy.PerExampleChannel, false)]
    public void PolicyForTheOtherLayerKindRejected(SelectionPolicy policy, bool convolutional)
    {
        var options = new MePropOptions { Ratio = 0.1, Selection = policy };
        Assert.Throws<ArgumentException>(() => new GradientSparsifier("layer", options, convolutional, seed: 1));
    }

    [Theory]
    [InlineData(SelectionPolicy.PerChannel, true)]
    [InlineData(SelectionPolicy.PerExampleChannel, true)]
    [InlineData(SelectionPolicy.Random, true)]
    [InlineData(SelectionPolicy.PerExample, false)]
    [InlineData(SelectionPolicy.Unified, false)]
    [InlineData(SelectionPolicy.PerChannel, false)]
    [InlineData(SelectionPolicy.Random, false)]
    public void PolicyForItsLayerKindAccepted(SelectionPolicy policy, bool convolutional) =>
        _ = new GradientSparsifier("layer", new MePropOptions { Ratio = 0.1, Selection = policy }, convolutional, seed: 1);
}
