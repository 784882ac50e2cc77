namespace NatKit.Utp;

/// <summary>
/// Knobs of a <see cref="UtpSocket"/>. Defaults follow BEP 29 and RFC 6817 (LEDBAT) where they say something, and
/// libutp where they do not. <see cref="Validate"/> names the bad field.
/// </summary>
public sealed record UtpOptions
{
    /// <summary>Largest datagram uTP sends, header included (BEP 29: stay under the path MTU). 1400 bytes fits a
    /// 1500-byte Ethernet MTU with IPv6 and a tunnel header to spare.</summary>
    public int MaxDatagramSize { get; init; } = 1400;

    /// <summary>Largest datagram sent on a connection whose peer is a loopback address (127.0.0.0/8, ::1); 0 (the
    /// default): <see cref="MaxDatagramSize"/>. The loopback interface's MTU is 64 KiB, so two endpoints on one machine
    /// can move a window in a twentieth of the system calls; the path to a loopback address never leaves the host, so
    /// this cannot break a real path. Only the sender's setting counts (a receiver takes any size). Keep it at 0 when
    /// the peer may be an implementation that expects MTU-sized datagrams (libutp's default buffers do).</summary>
    public int LoopbackMaxDatagramSize { get; init; }

    /// <summary>Bytes buffered for reading per connection; the advertised wnd_size is what is free of it.</summary>
    public int ReceiveBufferSize { get; init; } = 1 << 20;

    /// <summary>Bytes a writer may queue ahead of the network per connection.</summary>
    public int SendBufferSize { get; init; } = 1 << 20;

    /// <summary>Most packets in flight (and most held for reordering); a power of two, at most 16384.</summary>
    public int MaxPacketsInFlight { get; init; } = 1024;

    /// <summary>LEDBAT target queuing delay (BEP 29 and RFC 6817: 100 ms).</summary>
    public TimeSpan TargetDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The RTO never goes below this (BEP 29: 500 ms).</summary>
    public TimeSpan MinRetransmitTimeout { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Exponential backoff stops here, so a recovering path is probed at least this often.</summary>
    public TimeSpan MaxRetransmitTimeout { get; init; } = TimeSpan.FromSeconds(4);

    /// <summary>First SYN retransmission; each further one waits twice as long.</summary>
    public TimeSpan SynTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>SYN retransmissions before ConnectAsync gives up. With the defaults (1 s, doubling, 3 retries)
    /// a connect to a silent address fails 15 s after it started.</summary>
    public int SynRetries { get; init; } = 3;

    /// <summary>An established connection fails when nothing has arrived from the peer for this long. While idle it
    /// probes the peer every <see cref="KeepAliveInterval"/>, and a live peer answers each probe, so only a dead
    /// (or cut-off) peer trips it.</summary>
    public TimeSpan DeadPeerTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>After this long without hearing from the peer, send a probe that asks for an ACK (it also keeps NAT
    /// bindings open).</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Timer granularity for retransmissions, keepalives and delayed ACKs.</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>How long a fully closed connection lingers to re-acknowledge a retransmitted FIN.</summary>
    public TimeSpan Linger { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Acknowledge at least every this many in-order data packets (more ACKs are sent whenever the socket's
    /// receive queue drains).</summary>
    public int AckEveryPackets { get; init; } = 8;

    /// <summary>Connections per endpoint (incoming and outgoing); SYNs beyond it are ignored.</summary>
    public int MaxConnections { get; init; } = 1024;

    /// <summary>Accepted connections waiting for AcceptAsync; SYNs beyond it are ignored.</summary>
    public int AcceptBacklog { get; init; } = 128;

    /// <summary>Non-uTP datagrams queued for <see cref="UtpSocket.OtherTraffic"/>; new ones are dropped (and counted)
    /// while it is full.</summary>
    public int OtherTrafficQueue { get; init; } = 256;

    /// <summary>Where connection ids and initial sequence numbers come from; null means <see cref="System.Random.Shared"/>.
    /// Pass the lab's <c>VirtualNetwork.Random</c> for runs that repeat exactly. Used under the endpoint's lock.</summary>
    public Random? Random { get; init; }

    public static UtpOptions Default { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field out of range.</summary>
    public UtpOptions Validate()
    {
        Check(MaxDatagramSize is >= 150 and <= 65507, nameof(MaxDatagramSize), "150..65507 bytes");
        Check(LoopbackMaxDatagramSize is 0 or (>= 150 and <= 65507), nameof(LoopbackMaxDatagramSize),
            "0 or 150..65507 bytes");
        Check(ReceiveBufferSize >= 4 * Math.Max(MaxDatagramSize, LoopbackMaxDatagramSize), nameof(ReceiveBufferSize), "at least 4 datagrams");
        Check(SendBufferSize >= Math.Max(MaxDatagramSize, LoopbackMaxDatagramSize), nameof(SendBufferSize), "at least one datagram");
        Check(MaxPacketsInFlight is >= 16 and <= 16384 && (MaxPacketsInFlight & (MaxPacketsInFlight - 1)) == 0,
            nameof(MaxPacketsInFlight), "a power of two in 16..16384");
        Check(TargetDelay > TimeSpan.Zero, nameof(TargetDelay), "positive");
        Check(MinRetransmitTimeout > TimeSpan.Zero, nameof(MinRetransmitTimeout), "positive");
        Check(MaxRetransmitTimeout >= MinRetransmitTimeout, nameof(MaxRetransmitTimeout), "at least MinRetransmitTimeout");
        Check(SynTimeout > TimeSpan.Zero, nameof(SynTimeout), "positive");
        Check(SynRetries is >= 0 and <= 16, nameof(SynRetries), "0..16");
        Check(KeepAliveInterval > TimeSpan.Zero, nameof(KeepAliveInterval), "positive");
        Check(DeadPeerTimeout > KeepAliveInterval, nameof(DeadPeerTimeout), "longer than KeepAliveInterval");
        Check(TickInterval > TimeSpan.Zero && TickInterval <= MinRetransmitTimeout, nameof(TickInterval),
            "positive and at most MinRetransmitTimeout");
        Check(Linger >= TimeSpan.Zero, nameof(Linger), "not negative");
        Check(AckEveryPackets is >= 1 and <= 64, nameof(AckEveryPackets), "1..64");
        Check(MaxConnections >= 1, nameof(MaxConnections), "at least 1");
        Check(AcceptBacklog >= 1, nameof(AcceptBacklog), "at least 1");
        Check(OtherTrafficQueue >= 1, nameof(OtherTrafficQueue), "at least 1");
        return this;
    }

    /// <summary>The largest datagram for a connection to <paramref name="remote"/> (see
    /// <see cref="LoopbackMaxDatagramSize"/>).</summary>
    public int MaxDatagramSizeFor(System.Net.IPEndPoint remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        return LoopbackMaxDatagramSize > 0 && System.Net.IPAddress.IsLoopback(remote.Address)
            ? LoopbackMaxDatagramSize
            : MaxDatagramSize;
    }

    /// <summary>The connect bound implied by <see cref="SynTimeout"/> and <see cref="SynRetries"/>.</summary>
    public TimeSpan ConnectTimeoutBound
    {
        get
        {
            var total = TimeSpan.Zero;
            var step = SynTimeout;
            for (var i = 0; i <= SynRetries; i++)
            {
                total += step;
                step *= 2;
            }

            return total;
        }
    }

    private static void Check(bool ok, string field, string expected)
    {
        if (!ok)
        {
            throw new ArgumentException($"UtpOptions.{field} must be {expected}", field);
        }
    }
}
