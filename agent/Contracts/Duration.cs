using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;

namespace NodeMesh.Contracts;

/// <summary>
/// Durations as operators write them in config and on the command line, the way Envoy, ztunnel and Kubernetes do:
/// a number and a unit, or several ("250ms", "5s", "1m30s", "1.5h", "7d"). TimeSpan's own "hh:mm:ss" is accepted too.
/// </summary>
public static class Duration
{
    /// <summary>The longest duration accepted (ten years): beyond it no setting makes sense, and TimeSpan would overflow soon after.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromDays(3650);

    private const int MaxLength = 32;

    public static bool TryParse(string? text, out TimeSpan value, [NotNullWhen(false)] out string? error)
    {
        value = TimeSpan.Zero;
        error = $"'{Printable.Of(text ?? "null")}' is not a duration: write a number and a unit (ms, s, m, h or d), e.g. \"5s\", \"250ms\" or \"1m30s\"";
        if (string.IsNullOrWhiteSpace(text) || text.Length > MaxLength)
        {
            return false;
        }

        if (text.Contains(':'))
        {
            if (!TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value) || value < TimeSpan.Zero)
            {
                return false;
            }

            return WithinMax(text, value, out error);
        }

        decimal total = 0;
        ReadOnlySpan<char> rest = text.AsSpan().Trim();
        while (!rest.IsEmpty)
        {
            int digits = 0;
            while (digits < rest.Length && (char.IsAsciiDigit(rest[digits]) || rest[digits] == '.'))
            {
                digits++;
            }

            int letters = digits;
            while (letters < rest.Length && char.IsAsciiLetterLower(rest[letters]))
            {
                letters++;
            }

            if (digits == 0 || letters == digits
                || !decimal.TryParse(rest[..digits], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal number))
            {
                return false;
            }

            decimal? unitMilliseconds = rest[digits..letters] switch
            {
                "ms" => 1m,
                "s" => 1_000m,
                "m" => 60_000m,
                "h" => 3_600_000m,
                "d" => 86_400_000m,
                _ => null,
            };
            if (unitMilliseconds is null)
            {
                return false;
            }

            total += number * unitMilliseconds.Value;
            if (total > (decimal)Max.TotalMilliseconds)
            {
                error = TooLong(text);
                return false;
            }

            rest = rest[letters..];
        }

        // Ticks, not milliseconds: "1.5ms" stays 1.5 ms.
        value = TimeSpan.FromTicks((long)(total * TimeSpan.TicksPerMillisecond));
        error = null;
        return true;
    }

    public static TimeSpan Parse(string text) => TryParse(text, out TimeSpan value, out string? error) ? value : throw new FormatException(error);

    /// <summary>The shortest form <see cref="TryParse"/> reads back to the same value: "5s", "1m30s", "250ms", "1d".</summary>
    public static string Format(TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            return "0s";
        }

        var text = new StringBuilder();
        long ticks = value.Ticks;
        Append(text, ref ticks, TimeSpan.TicksPerDay, "d");
        Append(text, ref ticks, TimeSpan.TicksPerHour, "h");
        Append(text, ref ticks, TimeSpan.TicksPerMinute, "m");
        Append(text, ref ticks, TimeSpan.TicksPerSecond, "s");
        if (ticks > 0)
        {
            decimal milliseconds = (decimal)ticks / TimeSpan.TicksPerMillisecond;
            text.Append(milliseconds.ToString(CultureInfo.InvariantCulture)).Append("ms");
        }

        return text.ToString();
    }

    private static void Append(StringBuilder text, ref long ticks, long unit, string suffix)
    {
        if (ticks >= unit)
        {
            text.Append((ticks / unit).ToString(CultureInfo.InvariantCulture)).Append(suffix);
            ticks %= unit;
        }
    }

    private static bool WithinMax(string text, TimeSpan value, [NotNullWhen(false)] out string? error)
    {
        error = value > Max ? TooLong(text) : null;
        return error is null;
    }

    private static string TooLong(string text) => $"'{Printable.Of(text)}' is longer than the longest duration accepted, {Max.TotalDays} days";
}
