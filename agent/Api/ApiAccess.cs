using System.Globalization;
using NodeMesh.Interop;

namespace NodeMesh.Api;

/// <summary>
/// Who may use the local API: root, or a member of the configured group (<c>api.group</c>). Decided from the
/// kernel's record of the caller (<see cref="PeerCredentials"/>), never from anything the caller sends.
/// </summary>
internal sealed class ApiAccess
{
    private ApiAccess(string? groupName, uint? gid)
    {
        GroupName = groupName;
        Gid = gid;
    }

    public string? GroupName { get; }

    public uint? Gid { get; }

    /// <summary>Root only.</summary>
    public static ApiAccess RootOnly { get; } = new(null, null);

    /// <summary>Root and the members of <paramref name="group"/> (a name looked up in <paramref name="groupFile"/>, or a number).</summary>
    public static ApiAccess ForGroup(string group, string groupFile = "/etc/group")
    {
        if (group.Length == 0)
        {
            return RootOnly;
        }

        if (uint.TryParse(group, NumberStyles.None, CultureInfo.InvariantCulture, out uint gid))
        {
            return new ApiAccess(group, gid);
        }

        // name:password:gid:members
        foreach (string line in File.ReadLines(groupFile))
        {
            string[] fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == group && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
            {
                return new ApiAccess(group, gid);
            }
        }

        throw new InvalidDataException($"there is no group '{group}' in {groupFile}");
    }

    public static bool IsGroupName(string? value) =>
        value is not null && value.Length <= 32 && value.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '_' or '-')
        && (value.Length == 0 || value[0] != '-');

    /// <summary>Null if the caller may use the API, else the reply it gets.</summary>
    public string? Refusal(PeerCredentials caller)
    {
        if (caller.Uid == 0 || (Gid is uint gid && (caller.Gid == gid || caller.Groups.Contains(gid))))
        {
            return null;
        }

        string allowed = Gid is null ? "root only (set api.group to let a group in)" : $"root and members of group '{GroupName}' (gid {Gid})";
        return $"permission denied: the agent's local API is for {allowed}; the caller is uid {caller.Uid}, gid {caller.Gid} (pid {caller.Pid})";
    }
}
