namespace NatKit.Nat.Internal;

/// <summary>
/// The ports (or ICMP identifiers) of one protocol on one external address: who owns each, how many mappings
/// share it (Linux-style sharing), and until when a freed port is held down (RFC 6888 REQ-8). 640 KB, made on
/// first use.
/// </summary>
internal sealed class PortSpace
{
    /// <summary>Owning mapping index + 1; 0 = free.</summary>
    public readonly int[] Owner = new int[65536];

    /// <summary>Mappings using the port (more than one only when ports are shared across destinations).</summary>
    public readonly ushort[] Users = new ushort[65536];

    /// <summary>Engine second before which a freed port is not handed out again.</summary>
    public readonly int[] HoldUntil = new int[65536];

    /// <summary>Where sequential assignment continues.</summary>
    public int Cursor;

    public int InUse;
}
