namespace NodeMesh.Contracts;

/// <summary>Keeps untrusted strings readable in error messages: no control characters, bounded length.</summary>
public static class Printable
{
    public static string Of(string value)
    {
        string shortened = value.Length > 80 ? value[..80] + "…" : value;
        return string.Create(shortened.Length, shortened, static (span, s) =>
        {
            for (int i = 0; i < s.Length; i++)
            {
                span[i] = char.IsControl(s[i]) ? '?' : s[i];
            }
        });
    }
}
