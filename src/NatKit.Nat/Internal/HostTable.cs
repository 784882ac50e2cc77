namespace NatKit.Nat.Internal;

/// <summary>Per internal address: its paired external address (RFC 4787 REQ-2) and how many mappings it holds
/// (RFC 6888 REQ-4).</summary>
internal struct HostState
{
    /// <summary>External address index + 1; 0 = not paired yet.</summary>
    public int PairedExt;

    public int Mappings;
}
