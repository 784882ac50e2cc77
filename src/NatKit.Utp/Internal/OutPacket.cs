namespace NatKit.Utp.Internal;

/// <summary>One slot of the send window, indexed by seq_nr modulo the window: the packet as sent (so a retransmission
/// only refreshes timestamps and ack_nr) and its bookkeeping.</summary>
internal struct OutPacket
{
    public byte[]? Buffer;
    public int Length;
    public int Payload;
    public int Transmissions;
    public long SentMicros;
    public bool InFlight;
    public bool NeedResend;
    public bool Acked;
    public bool FastResent;
}

/// <summary>One slot of the reorder buffer, indexed by seq_nr modulo the window.</summary>
internal struct InPacket
{
    public byte[]? Buffer;
    public int Length;
    public bool Present;
    public bool Fin;
}
