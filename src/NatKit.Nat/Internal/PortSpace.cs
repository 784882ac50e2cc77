namespace NatKit.Nat.Internal;

/// <summary>
/// The ports (or ICMP identifiers) of one protocol on one external address: who owns each, how many mappings
/// share it (only with Linux-style sharing), and until when a freed port is held down (only with a hold-down,
/// RFC 6888 REQ-8). 256 KB, plus 128 KB and 256 KB for the optional parts; made on first use.
/// </summary>
internal sealed class PortSpace(bool sharing, bool holdDown)
{
    /// <summary>Owning mapping index + 1; 0 = free.</summary>
    public readonly int[] Owner = new int[65536];

    /// <summary>Mappings using the port (sharing only).</summary>
    public readonly ushort[]? Users = sharing ? new ushort[65536] : null;

    /// <summary>Engine second before which a freed port is not handed out again (hold-down only).</summary>
    public readonly int[]? HoldUntil = holdDown ? new int[65536] : null;

    /// <summary>Where sequential assignment continues.</summary>
    public int Cursor;

    /// <summary>True when no mapping uses the port.</summary>
    public bool IsFree(int port) => Users is null ? Owner[port] == 0 : Users[port] == 0;

    /// <summary>True when the port is not held down at engine second <paramref name="now"/>.</summary>
    public bool IsCool(int port, int now) => HoldUntil is null || HoldUntil[port] <= now;
}
