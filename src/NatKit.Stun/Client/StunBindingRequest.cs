namespace NatKit.Stun.Client;

/// <summary>What to put in a Binding request beyond the basics (RFC 5780's test knobs).</summary>
public readonly record struct StunBindingRequest
{
    /// <summary>CHANGE-REQUEST flag A: answer from the alternate address.</summary>
    public bool ChangeAddress { get; init; }

    /// <summary>CHANGE-REQUEST flag B: answer from the alternate port.</summary>
    public bool ChangePort { get; init; }

    /// <summary>RESPONSE-PORT: answer to this port of our source address (0: none).</summary>
    public ushort ResponsePort { get; init; }

    /// <summary>PADDING of this many bytes (0: none).</summary>
    public int Padding { get; init; }
}
