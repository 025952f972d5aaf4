using System.Globalization;
using MeProp.Training;
using ScottPlot;
using SkiaSharp;

namespace MeProp.Cli.Plotting;

/// <summary>
/// Draws training curves (a metric per epoch, one line per curve, a shaded min-max band where a curve
/// summarises several runs) with ScottPlot, and writes each chart as PNG and SVG.
/// </summary>
internal static class TrainingCurves
{
    // Wide enough for a title over the data area beside a legend of long labels ("random5 (2 seeds, 1 past epoch 12)").
    private const int Width = 1000;
    private const int Height = 500;
    private const double BandOpacity = 0.2;

    /// <summary>
    /// Whether this machine has any font. Skia as ScottPlot brings it on Linux reads fonts from
    /// /usr/share/fonts itself (no fontconfig); with none there its default typeface is an empty one that
    /// has no glyphs, and the charts (PNG and SVG) come out without any text.
    /// </summary>
    public static bool HasFonts => SKTypeface.Default.GlyphCount > 0;

    /// <summary>
    /// A sans-serif family that is installed, or null to keep ScottPlot's choice. Without fontconfig Skia's
    /// default is the first family it finds (DejaVu Serif on Debian), so the family is named here.
    /// </summary>
    private static readonly string? SansFont = new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica", "Segoe UI" }
        .FirstOrDefault(name => SKFontManager.Default.FontFamilies.Contains(name, StringComparer.OrdinalIgnoreCase));

    /// <summary>Writes <paramref name="pathWithoutExtension"/>.png and .svg; returns their paths.</summary>
    public static string[] Write(Metric metric, IReadOnlyList<Curve> curves, string title, string pathWithoutExtension)
    {
        var plot = Draw(metric, curves, title);
        string png = pathWithoutExtension + ".png", svg = pathWithoutExtension + ".svg";
        // Readers (a viewer, a commit during a reproduction) see the old or the new image, never a torn one.
        AtomicFile.WriteAllBytes(png, plot.GetImageBytes(Width, Height, ImageFormat.Png));
        AtomicFile.WriteAllText(svg, plot.GetSvgXml(Width, Height));
        return [png, svg];
    }

    private static Plot Draw(Metric metric, IReadOnlyList<Curve> curves, string title)
    {
        var plot = new Plot();
        if (SansFont is not null) plot.Font.Set(SansFont);
        // Colours go by position in the list, so that a configuration keeps its colour in every chart even
        // where another one has no points.
        var palette = new ScottPlot.Palettes.Category10().Colors;
        // A log axis is drawn as log10 of the values with tick labels that undo it (ScottPlot has no log axis).
        Func<double, double> toAxis = metric.Scale == ValueScale.Logarithmic ? Math.Log10 : v => v;

        // All bands first, so that no band is laid over another curve's line.
        for (int i = 0; i < curves.Count; i++)
        {
            if (curves[i].Runs < 2 || curves[i].Epochs.Length == 0) continue;
            var band = plot.Add.FillY(curves[i].Epochs, curves[i].Low.Select(toAxis).ToArray(), curves[i].High.Select(toAxis).ToArray());
            band.FillColor = palette[i % palette.Length].WithOpacity(BandOpacity);
            band.LineWidth = 0;
        }
        for (int i = 0; i < curves.Count; i++)
        {
            if (curves[i].Epochs.Length == 0) continue;
            var line = plot.Add.Scatter(curves[i].Epochs, curves[i].Mean.Select(toAxis).ToArray(), palette[i % palette.Length]);
            line.LegendText = curves[i].Label;
            line.LineWidth = 2;
            line.MarkerSize = 4;
        }

        plot.Title(title);
        plot.Axes.Title.Label.FontSize = 14;
        plot.XLabel("epoch");
        plot.YLabel(metric.AxisLabel);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        // Outside the data area, so that it covers no curve however many there are.
        plot.ShowLegend(Edge.Right);
        plot.Axes.AutoScale();
        var drawn = curves.Where(c => c.Epochs.Length > 0).ToList();
        if (drawn.Count > 0)
        {
            if (metric.Scale == ValueScale.Logarithmic) SetLogarithmicAxis(plot, drawn);
            else SetPercentAxis(plot, drawn);
        }
        return plot;
    }

    /// <summary>
    /// From a little below the lowest value after epoch 1 (bands included) to 100%: accuracies on MNIST sit at
    /// 98-99.5% after the first epoch, and an axis down to the first epoch's value would flatten them into one line.
    /// </summary>
    private static void SetPercentAxis(Plot plot, List<Curve> curves)
    {
        var later = curves.SelectMany(c => c.Epochs.Zip(c.Low)).Where(p => p.First > 1).Select(p => p.Second).ToList();
        double lowest = later.Count > 0 ? later.Min() : curves.Min(c => c.Low.Min());
        double margin = Math.Max(0.1 * (100 - lowest), 0.05);
        plot.Axes.SetLimitsY(Math.Max(0, lowest - margin), 100);
    }

    /// <summary>
    /// From the 1-2-5 value at or below the lowest value (bands included) to the one at or above the highest,
    /// labelled at 1, 2 and 5 times each power of ten (only the powers of ten beyond three decades), with
    /// minor ticks at the other multiples. Values are drawn as their log10, so the ticks are placed by hand.
    /// </summary>
    private static void SetLogarithmicAxis(Plot plot, List<Curve> curves)
    {
        double lowest = curves.Min(c => c.Low.Min()), highest = curves.Max(c => c.High.Max());
        // A decade more on either side, so that a value that rounds just past a power of ten (0.3 / 3 is
        // a little below 0.1, whose log10 rounds to -1) still has a 1-2-5 value beyond it.
        int firstDecade = (int)Math.Floor(Math.Log10(lowest)) - 1, lastDecade = (int)Math.Ceiling(Math.Log10(highest)) + 1;
        var steps = Enumerable.Range(firstDecade, lastDecade - firstDecade + 1)
            .SelectMany(decade => new[] { 1, 2, 5 }.Select(multiple => multiple * Math.Pow(10, decade)))
            .ToList();
        double bottom = steps.Last(v => v <= lowest), top = steps.First(v => v >= highest);
        bool onlyPowersOfTen = top / bottom > 1000;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int decade = firstDecade; decade <= lastDecade; decade++)
            for (int multiple = 1; multiple <= 9; multiple++)
            {
                double value = multiple * Math.Pow(10, decade);
                if (value < bottom || value > top) continue;
                if (multiple == 1 || (!onlyPowersOfTen && multiple is 2 or 5))
                    ticks.AddMajor(Math.Log10(value), value.ToString("G6", CultureInfo.InvariantCulture));
                else ticks.AddMinor(Math.Log10(value));
            }
        plot.Axes.Left.TickGenerator = ticks;
        plot.Grid.MinorLineWidth = 1;
        // A little room beyond the end ticks, so that they are inside the axis and get their labels.
        double margin = 0.02 * (Math.Log10(top) - Math.Log10(bottom));
        plot.Axes.SetLimitsY(Math.Log10(bottom) - margin, Math.Log10(top) + margin);
    }
}
