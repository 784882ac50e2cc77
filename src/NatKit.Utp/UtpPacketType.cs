namespace NatKit.Utp;

/// <summary>The five uTP packet types of BEP 29 (the high nibble of the first header byte).</summary>
public enum UtpPacketType : byte
{
    /// <summary>ST_DATA: carries payload; consumes a sequence number.</summary>
    Data = 0,

    /// <summary>ST_FIN: the sender has no more data; consumes a sequence number.</summary>
    Fin = 1,

    /// <summary>ST_STATE: an acknowledgement with no payload; does not consume a sequence number.</summary>
    State = 2,

    /// <summary>ST_RESET: terminates the connection abruptly.</summary>
    Reset = 3,

    /// <summary>ST_SYN: opens a connection; consumes a sequence number.</summary>
    Syn = 4,
}
