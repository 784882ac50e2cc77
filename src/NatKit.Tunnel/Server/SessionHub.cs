using System.Buffers.Binary;
using System.Collections.Concurrent;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Tunnel.Server;

/// <summary>
/// The NAT engine's inside on a tunnel server: every session behind one packet port. Reading takes packets from the
/// sessions that have some, round robin (at most <see cref="Fairness"/> from one before the next gets its turn);
/// writing routes by destination address to the session whose inside address it is, and the sessions written to are
/// woken once per batch, at <see cref="Flush"/>. A packet for an address no connected session has (a client between
/// two connections) is dropped and counted.
/// </summary>
internal sealed class SessionHub : ISignalingPacketPort
{
    /// <summary>Packets read from one session before the next one's turn.</summary>
    public const int Fairness = 16;

    private readonly Lock _gate = new();
    private readonly Queue<TunnelSession> _ready = new();
    private readonly ConcurrentDictionary<uint, TunnelSession> _byAddress = new();
    private readonly List<TunnelSession> _touched = [];
    private readonly byte[] _scratch = GC.AllocateUninitializedArray<byte>(2 * PacketPump.FrameSize);
    private readonly int[] _lengths = new int[512];
    private TunnelSession? _current;
    private int _takenFromCurrent;
    private Action? _wake;

    private long _written;
    private long _writeFailures;
    private long _noSession;

    public PacketPortStats Stats => new(Volatile.Read(ref _written), Volatile.Read(ref _writeFailures), 0, 0, 0);

    /// <summary>Packets for an inside address no connected session has.</summary>
    public long NoSession => Volatile.Read(ref _noSession);

    public int Connected => _byAddress.Count;

    public void SetWake(Action wake) => _wake = wake;

    /// <summary>Routes the session's inside address to it (replacing an older connection of the same session).</summary>
    public void Add(TunnelSession session)
    {
        _byAddress[session.InsideAddress.Value] = session;
        session.Link.OnReadable = () => Readable(session);
    }

    /// <summary>Stops routing to <paramref name="session"/> (if its address still routes to it).</summary>
    public void Remove(TunnelSession session) =>
        _byAddress.TryRemove(new KeyValuePair<uint, TunnelSession>(session.InsideAddress.Value, session));

    public IEnumerable<TunnelSession> Sessions => _byAddress.Values;

    private void Readable(TunnelSession session)
    {
        bool first;
        lock (_gate)
        {
            first = _ready.Count == 0;
            _ready.Enqueue(session);
        }

        if (first)
        {
            _wake?.Invoke();
        }
    }

    public int Read(Span<byte> frame, out VirtioNetHeader offload)
    {
        offload = VirtioNetHeader.None;
        while (true)
        {
            if (_current is null)
            {
                lock (_gate)
                {
                    if (!_ready.TryDequeue(out _current))
                    {
                        return 0;
                    }
                }

                _takenFromCurrent = 0;
            }

            var session = _current;
            if (!session.Link.Inbound.TryDequeue(out var packet, out var nowEmpty))
            {
                _current = null; // emptied meanwhile (its link ended): next one
                continue;
            }

            var length = packet.Length;
            packet.Packet.CopyTo(frame[PacketPump.Headroom..]);
            offload = packet.Offload;
            Link.PacketQueue.Release(packet);
            if (nowEmpty)
            {
                _current = null; // it queues itself again with its next packet
            }
            else if (++_takenFromCurrent == Fairness)
            {
                lock (_gate)
                {
                    _ready.Enqueue(session);
                }

                _current = null;
            }

            return length;
        }
    }

    public bool Write(Span<byte> frame, int length, in VirtioNetHeader offload)
    {
        var packet = frame.Slice(PacketPump.Headroom, length);
        if (length < Ipv4Field.MinHeaderLength || packet[0] >> 4 != 4 ||
            !_byAddress.TryGetValue(BinaryPrimitives.ReadUInt32BigEndian(packet[Ipv4Field.Destination..]), out var session))
        {
            _noSession++;
            _writeFailures++;
            return false;
        }

        session.PrepareOutbound(packet);
        if (!session.Link.TrySend(packet, offload, _scratch, _lengths))
        {
            _writeFailures++;
            return false;
        }

        _written++;
        if (!session.Touched)
        {
            session.Touched = true;
            _touched.Add(session);
        }

        return true;
    }

    public void Flush()
    {
        foreach (var session in _touched)
        {
            session.Touched = false;
            session.Link.SendFromDataPlane();
        }

        _touched.Clear();
    }
}
