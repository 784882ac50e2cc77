using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.Lab.Internal;

/// <summary>
/// A UDP socket on a lab host. Sends build a real IPv4/UDP packet and hand it to the host; receives complete on
/// the lab thread (continuations inline, or posted to the lab's context when the caller captured it), so code
/// awaiting with ConfigureAwait(false) stays on the loop. A socket bound through
/// <see cref="IMulticastNetwork"/> shares its port and joins groups; every socket can tell a datagram's destination.
/// </summary>
internal sealed class LabUdpSocket : IMulticastDatagramSocket, IHopLimitDatagramSocket, IValueTaskSource<ReceivedDatagram>,
    IValueTaskSource<ReceivedMessage>
{
    /// <summary>Datagrams queued before the receiver reads them; more are dropped, like a full socket buffer.</summary>
    public const int ReceiveQueueLimit = 4096;

    private readonly LabHost _host;
    private readonly Queue<Queued> _queue = new();
    private readonly Dictionary<ulong, IPEndPoint> _endPoints = [];
    private readonly HashSet<uint> _groups = [];
    private ManualResetValueTaskSourceCore<ReceivedMessage> _core;
    private Ipv4Address _multicastSource;
    private Memory<byte> _pendingBuffer;
    private bool _pending;
    private bool _disposed;
    private CancellationTokenRegistration _registration;
    private CancellationToken _pendingToken;

    public LabUdpSocket(LabHost host, Ipv4Address boundAddress, ushort port, bool shared = false)
    {
        _host = host;
        Shared = shared;
        BoundAddress = boundAddress;
        Port = port;
        LocalEndPoint = new IPEndPoint(boundAddress.ToIPAddress(), port);
        _core.RunContinuationsAsynchronously = false;
    }

    public IPEndPoint LocalEndPoint { get; }

    public Ipv4Address BoundAddress { get; }

    public ushort Port { get; }

    /// <summary>Bound with <see cref="IMulticastNetwork.BindMulticastUdpAsync"/>: shares its port with other such
    /// sockets.</summary>
    public bool Shared { get; }

    /// <summary>True when it joined <paramref name="group"/>.</summary>
    public bool IsMember(Ipv4Address group) => _groups.Contains(group.Value);

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default) => Send(datagram, remoteEndPoint, 64, cancellationToken);

    /// <summary>The packet's TTL is <paramref name="hopLimit"/>: every lab router decrements it and drops the
    /// packet (ICMP Time Exceeded) when it would forward it with none left.</summary>
    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint, byte hopLimit,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfZero(hopLimit);
        return Send(datagram, remoteEndPoint, hopLimit, cancellationToken);
    }

    private ValueTask<int> Send(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint, byte ttl,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        _host.Network.Scheduler.EnsureLabThread();
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        var destination = LabHost.ToIpv4(remoteEndPoint.Address, "UDP");
        var length = Ipv4Field.MinHeaderLength + UdpField.HeaderLength + datagram.Length;
        if (length > _host.Link.Mtu)
        {
            throw new NetworkException(SocketError.MessageSize,
                $"a {datagram.Length}-byte UDP datagram does not fit the {_host.Link.Mtu}-byte MTU of lab host " +
                $"{_host.Name} (the lab does not fragment at the sender)");
        }

        var packet = _host.Network.Pool.Rent(length);
        var source = destination.IsMulticast && _multicastSource != default
            ? _multicastSource
            : _host.SourceFor(BoundAddress);
        var header = new Ipv4Header(source, destination, ttl, Identification:
            _host.NextIdentification(), DontFragment: true);
        packet.Length = PacketBuilder.WriteIpv4Udp(packet.Buffer, header, Port, (ushort)remoteEndPoint.Port,
            datagram.Span);
        _host.Send(packet);
        return new ValueTask<int>(datagram.Length);
    }

    public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        if (!TryStartReceive(buffer, cancellationToken, out var done, out var canceled))
        {
            return canceled
                ? ValueTask.FromCanceled<ReceivedDatagram>(cancellationToken)
                : new ValueTask<ReceivedDatagram>(this, _core.Version);
        }

        return new ValueTask<ReceivedDatagram>(new ReceivedDatagram(done.Length, done.RemoteEndPoint));
    }

    public ValueTask<ReceivedMessage> ReceiveMessageFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        if (!TryStartReceive(buffer, cancellationToken, out var done, out var canceled))
        {
            return canceled
                ? ValueTask.FromCanceled<ReceivedMessage>(cancellationToken)
                : new ValueTask<ReceivedMessage>(this, _core.Version);
        }

        return new ValueTask<ReceivedMessage>(done);
    }

    public void JoinGroup(IPAddress group, IPAddress interfaceAddress)
    {
        _host.Network.Scheduler.EnsureLabThread();
        ObjectDisposedException.ThrowIf(_disposed, this);
        _groups.Add(Group(group).Value);
        _ = Interface(interfaceAddress);
    }

    public void LeaveGroup(IPAddress group, IPAddress interfaceAddress)
    {
        _host.Network.Scheduler.EnsureLabThread();
        if (Ipv4Address.TryFromIPAddress(group, out var g))
        {
            _groups.Remove(g.Value);
        }
    }

    public void SetMulticastSend(IPAddress interfaceAddress, int timeToLive = 1)
    {
        _host.Network.Scheduler.EnsureLabThread();
        if (timeToLive is < 0 or > 255)
        {
            throw new NetworkException(SocketError.InvalidArgument, $"{timeToLive} is not a time to live (0-255)");
        }

        // The lab's segments are one link each and its routers forward no multicast: the time to live changes
        // nothing here, the interface chooses the source address.
        _multicastSource = Interface(interfaceAddress);
    }

    private static Ipv4Address Group(IPAddress group)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (!Ipv4Address.TryFromIPAddress(group, out var g) || !g.IsMulticast)
        {
            throw new NetworkException(SocketError.InvalidArgument, $"{group} is not an IPv4 multicast address");
        }

        return g;
    }

    private Ipv4Address Interface(IPAddress interfaceAddress)
    {
        ArgumentNullException.ThrowIfNull(interfaceAddress);
        if (interfaceAddress.Equals(IPAddress.Any))
        {
            return _host.Interface.PrimaryAddress;
        }

        if (!Ipv4Address.TryFromIPAddress(interfaceAddress, out var a) || !_host.Interface.Owns(a))
        {
            throw new NetworkException(SocketError.AddressNotAvailable,
                $"lab host {_host.Name} has no interface with address {interfaceAddress}");
        }

        return a;
    }

    /// <summary>True with <paramref name="done"/> when a datagram was queued; false when the receive now waits (on
    /// <see cref="_core"/>), or with <paramref name="canceled"/> when the token already was.</summary>
    private bool TryStartReceive(Memory<byte> buffer, CancellationToken cancellationToken, out ReceivedMessage done,
        out bool canceled)
    {
        canceled = false;
        _host.Network.Scheduler.EnsureLabThread();
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_pending)
        {
            throw new InvalidOperationException("a receive is already pending on this socket (one at a time)");
        }

        if (TryTake(buffer, out done))
        {
            return true;
        }

        if (cancellationToken.IsCancellationRequested)
        {
            canceled = true;
            return false;
        }

        _core.Reset();
        _pending = true;
        _pendingBuffer = buffer;
        _pendingToken = cancellationToken;
        if (cancellationToken.CanBeCanceled)
        {
            _registration = cancellationToken.UnsafeRegister(static (s, token) =>
            {
                var socket = (LabUdpSocket)s!;
                socket._host.Network.Scheduler.OnLoop(static x =>
                {
                    var (sock, t) = ((LabUdpSocket, CancellationToken))x!;
                    sock.Cancel(t);
                }, (socket, token));
            }, this);
        }

        return false;
    }

    /// <summary>A datagram arrived: takes ownership of <paramref name="packet"/>.</summary>
    internal void Enqueue(LabPacket packet, int offset, int length, Ipv4Address source, ushort sourcePort,
        Ipv4Address destination)
    {
        if (_queue.Count >= ReceiveQueueLimit)
        {
            _host.ReceiveQueueOverflows++;
            _host.Network.Pool.Return(packet);
            return;
        }

        _queue.Enqueue(new Queued(packet, offset, length, source, sourcePort, destination));
        if (_pending && TryTake(_pendingBuffer, out var datagram))
        {
            _pending = false;
            _pendingBuffer = default;
            _registration.Dispose();
            _registration = default;
            _core.SetResult(datagram);
        }
    }

    /// <summary>Takes the first queued datagram that fits <paramref name="buffer"/>. One larger than the buffer is
    /// dropped, never cut short, as the real network's sockets drop it: protocol code sees the same on both.</summary>
    private bool TryTake(Memory<byte> buffer, out ReceivedMessage datagram)
    {
        while (_queue.Count > 0)
        {
            var q = _queue.Dequeue();
            if (q.Length > buffer.Length)
            {
                _host.OversizeDatagramDrops++;
                _host.Network.Pool.Return(q.Packet);
                continue;
            }

            q.Packet.Buffer.AsSpan(q.Offset, q.Length).CopyTo(buffer.Span);
            _host.Network.Pool.Return(q.Packet);
            datagram = new ReceivedMessage(q.Length, EndPoint(q.Source, q.SourcePort),
                _host.AddressOf(q.Destination));
            return true;
        }

        datagram = default;
        return false;
    }

    private IPEndPoint EndPoint(Ipv4Address address, ushort port)
    {
        var key = ((ulong)address.Value << 16) | port;
        if (!_endPoints.TryGetValue(key, out var ep))
        {
            if (_endPoints.Count >= 4096)
            {
                _endPoints.Clear();
            }

            ep = new IPEndPoint(address.ToIPAddress(), port);
            _endPoints.Add(key, ep);
        }

        return ep;
    }

    private void Cancel(CancellationToken token)
    {
        if (!_pending || _pendingToken != token)
        {
            return; // a late (posted) cancellation of a receive that has completed since
        }

        _pending = false;
        _pendingBuffer = default;
        _core.SetException(new OperationCanceledException(token));
    }

    ReceivedDatagram IValueTaskSource<ReceivedDatagram>.GetResult(short token)
    {
        var m = _core.GetResult(token);
        return new ReceivedDatagram(m.Length, m.RemoteEndPoint);
    }

    ReceivedMessage IValueTaskSource<ReceivedMessage>.GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token,
        ValueTaskSourceOnCompletedFlags flags) => _core.OnCompleted(continuation, state, token, flags);

    public void Dispose() => _host.Network.Scheduler.OnLoop(static s => ((LabUdpSocket)s!).DisposeOnLoop(), this);

    private void DisposeOnLoop()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _host.Unbind(this);
        while (_queue.TryDequeue(out var q))
        {
            _host.Network.Pool.Return(q.Packet);
        }

        if (_pending)
        {
            _pending = false;
            _registration.Dispose();
            _core.SetException(new ObjectDisposedException(nameof(LabUdpSocket)));
        }
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private readonly record struct Queued(LabPacket Packet, int Offset, int Length, Ipv4Address Source,
        ushort SourcePort, Ipv4Address Destination);
}
