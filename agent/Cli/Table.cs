using System.Text;

namespace NodeMesh.Cli;

/// <summary>A column of a <see cref="Table"/>; a wide-only column shows with <c>-o wide</c>.</summary>
/// <param name="MinWidth">The least width, so that rows printed in batches (<c>flows --follow</c>) mostly line up.</param>
internal sealed record Column(string Header, bool WideOnly = false, bool AlignRight = false, int MinWidth = 0);

/// <summary>Rows under headers, each column as wide as its widest cell, two spaces apart (as kubectl prints them).</summary>
internal sealed class Table(params Column[] columns)
{
    private readonly List<string[]> _rows = [];

    public Table Add(params string[] cells)
    {
        if (cells.Length != columns.Length)
        {
            throw new ArgumentException($"a row of {cells.Length} cells for {columns.Length} columns", nameof(cells));
        }

        _rows.Add(cells);
        return this;
    }

    public string Render(bool wide, bool header = true)
    {
        int[] shown = [.. Enumerable.Range(0, columns.Length).Where(i => wide || !columns[i].WideOnly)];
        int[] widths = [.. shown.Select(i => _rows.Select(r => r[i].Length).Append(columns[i].Header.Length).Append(columns[i].MinWidth).Max())];
        var text = new StringBuilder();
        IEnumerable<string[]> lines = header ? _rows.Prepend(columns.Select(c => c.Header).ToArray()) : _rows;
        foreach (string[] row in lines)
        {
            var line = new StringBuilder();
            for (int k = 0; k < shown.Length; k++)
            {
                string cell = row[shown[k]];
                bool last = k == shown.Length - 1;
                line.Append(columns[shown[k]].AlignRight ? cell.PadLeft(widths[k]) : last ? cell : cell.PadRight(widths[k]));
                if (!last)
                {
                    line.Append("  ");
                }
            }

            text.Append(line.ToString().TrimEnd()).Append('\n');
        }

        return text.ToString();
    }
}
