using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.Lab.Internal;

/// <summary>
/// TCP on a lab host: a small, honest reliable stream over real TCP segments, so connections cross the lab's
/// NAT routers and their TCP tracking (SYN, FIN, RST, timers) applies. Three-way handshake, cumulative ACKs,
/// go-back-N retransmission with a doubling timeout, a fixed 64 KiB window, FIN half-close, RST for closed
/// ports. No congestion control, no out-of-order buffering, no options: enough for protocol code, not a
/// TCP performance model.
/// </summary>
internal sealed class LabTcpStack(LabHost host)
{
    private readonly Dictionary<(uint, ushort), LabTcpListener> _listeners = [];
    private readonly Dictionary<(uint, ushort, uint, ushort), LabTcpConnection> _connections = [];

    public LabHost Host { get; } = host;

    public IStreamListener Listen(Ipv4Address address, int port, int backlog)
    {
        if (port == 0)
        {
            port = Host.PickEphemeralPort(p => !_listeners.ContainsKey((address.Value, (ushort)p)) &&
                                               !_listeners.ContainsKey((0, (ushort)p)));
        }
        else if (_listeners.ContainsKey((address.Value, (ushort)port)) || _listeners.ContainsKey((0, (ushort)port)) ||
                 (address == default && _listeners.Keys.Any(k => k.Item2 == port)))
        {
            throw new NetworkException(SocketError.AddressAlreadyInUse,
                $"cannot listen on TCP {address}:{port} on lab host {Host.Name}: the address is in use");
        }

        var listener = new LabTcpListener(this, address, (ushort)port, Math.Max(1, backlog));
        _listeners.Add((address.Value, (ushort)port), listener);
        return listener;
    }

    public async ValueTask<IStreamConnection> ConnectAsync(Ipv4Address remote, ushort remotePort, Ipv4Address local,
        int localPort, CancellationToken cancellationToken)
    {
        var source = Host.SourceFor(local);
        if (localPort == 0)
        {
            localPort = Host.PickEphemeralPort(p => !_connections.ContainsKey((source.Value, (ushort)p, remote.Value, remotePort)) &&
                                                    !_listeners.Keys.Any(k => k.Item2 == p));
        }
        else if (_connections.ContainsKey((source.Value, (ushort)localPort, remote.Value, remotePort)))
        {
            throw new NetworkException(SocketError.AddressAlreadyInUse,
                $"a TCP connection {source}:{localPort} -> {remote}:{remotePort} already exists on lab host {Host.Name}");
        }

        var c = new LabTcpConnection(this, source, (ushort)localPort, remote, remotePort, listener: null);
        _connections.Add(c.Key, c);
        c.Open();
        try
        {
            await c.Established.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            c.Cancel();
            throw;
        }

        return c;
    }

    public void Receive(Ipv4Address source, Ipv4Address destination, TcpSegment segment)
    {
        var key = (destination.Value, segment.DestinationPort, source.Value, segment.SourcePort);
        if (_connections.TryGetValue(key, out var c))
        {
            c.OnSegment(segment);
            return;
        }

        if (segment.Syn && !segment.Ack && !segment.Rst &&
            (_listeners.TryGetValue((destination.Value, segment.DestinationPort), out var l) ||
             _listeners.TryGetValue((0, segment.DestinationPort), out l)) && l.HasRoom)
        {
            var n = new LabTcpConnection(this, destination, segment.DestinationPort, source, segment.SourcePort, l);
            _connections.Add(n.Key, n);
            n.Accept(segment.SequenceNumber);
            return;
        }

        if (!segment.Rst)
        {
            // RFC 9293 3.10.7.1: a segment for no connection is answered with RST.
            var length = (uint)segment.Payload.Length + (segment.Syn ? 1u : 0) + (segment.Fin ? 1u : 0);
            SendSegment(destination, segment.DestinationPort, source, segment.SourcePort,
                segment.Ack ? segment.AcknowledgmentNumber : 0, segment.SequenceNumber + length,
                segment.Ack ? TcpFlags.Rst : TcpFlags.Rst | TcpFlags.Ack, default);
        }
    }

    internal void Remove(LabTcpConnection c) => _connections.Remove(c.Key);

    internal void Remove(LabTcpListener l) => _listeners.Remove((l.Address.Value, l.Port));

    internal void SendSegment(Ipv4Address source, ushort sourcePort, Ipv4Address destination, ushort destinationPort,
        uint sequence, uint acknowledgment, TcpFlags flags, ReadOnlySpan<byte> payload)
    {
        var packet = Host.Network.Pool.Rent(Ipv4Field.MinHeaderLength + TcpField.MinHeaderLength + payload.Length);
        packet.Length = PacketBuilder.WriteIpv4Tcp(packet.Buffer,
            new Ipv4Header(source, destination, Identification: Host.NextIdentification(), DontFragment: true),
            new TcpHeader(sourcePort, destinationPort, sequence, acknowledgment, flags, LabTcpConnection.Window),
            payload);
        Host.Send(packet);
    }
}

/// <summary>A listening TCP port on a lab host.</summary>
internal sealed class LabTcpListener : IStreamListener
{
    private readonly LabTcpStack _stack;
    private readonly Queue<LabTcpConnection> _ready = new();
    private readonly int _backlog;
    private TaskCompletionSource<IStreamConnection>? _waiter;
    private bool _closed;

    public LabTcpListener(LabTcpStack stack, Ipv4Address address, ushort port, int backlog)
    {
        _stack = stack;
        Address = address;
        Port = port;
        _backlog = backlog;
        LocalEndPoint = new IPEndPoint(address.ToIPAddress(), port);
    }

    public Ipv4Address Address { get; }

    public ushort Port { get; }

    public IPEndPoint LocalEndPoint { get; }

    public bool HasRoom => !_closed && _ready.Count < _backlog;

    public async ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        if (_ready.TryDequeue(out var c))
        {
            return c;
        }

        _waiter = new TaskCompletionSource<IStreamConnection>();
        return await _waiter.Task.WaitAsync(cancellationToken);
    }

    internal void Ready(LabTcpConnection c)
    {
        if (_waiter is { } w)
        {
            _waiter = null;
            w.TrySetResult(c);
        }
        else
        {
            _ready.Enqueue(c);
        }
    }

    public ValueTask DisposeAsync()
    {
        if (!_closed)
        {
            _closed = true;
            _stack.Remove(this);
            _waiter?.TrySetException(new ObjectDisposedException(nameof(LabTcpListener)));
            _waiter = null;
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>One TCP connection on a lab host; also its <see cref="Stream"/>.</summary>
internal sealed class LabTcpConnection : Stream, IStreamConnection
{
    public const ushort Window = 65535;
    private const int MaxRetransmissions = 8;
    private static readonly TimeSpan InitialRto = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan MaxRto = TimeSpan.FromSeconds(8);

    private readonly LabTcpStack _stack;
    private readonly LabTcpListener? _listener;
    private readonly Ipv4Address _local;
    private readonly ushort _localPort;
    private readonly Ipv4Address _remote;
    private readonly ushort _remotePort;
    private readonly TaskCompletionSource _established = new();
    private readonly ITimer _timer;
    private readonly int _mss;
    private readonly uint _iss;

    // Send side: _send holds bytes from sequence _sendBase (the oldest unacknowledged data byte) onward.
    private byte[] _send = new byte[4096];
    private int _sendCount;
    private uint _sendBase;
    private uint _sndUna;
    private uint _sndNxt;
    private bool _shutdownRequested;
    private bool _finSent;
    private bool _finAcked;

    // Receive side.
    private byte[] _recv = new byte[4096];
    private int _recvStart;
    private int _recvCount;
    private uint _rcvNxt;
    private bool _finReceived;
    private TaskCompletionSource<int>? _reader;
    private Memory<byte> _readBuffer;

    private State _state;
    private Exception? _error;
    private TimeSpan _rto = InitialRto;
    private int _retransmissions;

    public LabTcpConnection(LabTcpStack stack, Ipv4Address local, ushort localPort, Ipv4Address remote,
        ushort remotePort, LabTcpListener? listener)
    {
        _stack = stack;
        _listener = listener;
        _local = local;
        _localPort = localPort;
        _remote = remote;
        _remotePort = remotePort;
        LocalEndPoint = new IPEndPoint(local.ToIPAddress(), localPort);
        RemoteEndPoint = new IPEndPoint(remote.ToIPAddress(), remotePort);
        _mss = stack.Host.Link.Mtu - Ipv4Field.MinHeaderLength - TcpField.MinHeaderLength;
        _iss = (uint)stack.Host.Network.Random.NextInt64(0, uint.MaxValue);
        _timer = stack.Host.TimeProvider.CreateTimer(static s => ((LabTcpConnection)s!).OnTimeout(), this,
            Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    private enum State
    {
        SynSent,
        SynReceived,
        Established,
        Closed,
    }

    public (uint, ushort, uint, ushort) Key => (_local.Value, _localPort, _remote.Value, _remotePort);

    public Task Established => _established.Task;

    public Stream Stream => this;

    public IPEndPoint LocalEndPoint { get; }

    public IPEndPoint RemoteEndPoint { get; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Active open: send SYN.</summary>
    public void Open()
    {
        _state = State.SynSent;
        _sndUna = _iss;
        _sndNxt = _iss + 1;
        _sendBase = _iss + 1;
        Segment(TcpFlags.Syn, _iss, default);
        Arm();
    }

    /// <summary>Passive open: a SYN arrived for a listener; answer SYN-ACK.</summary>
    public void Accept(uint peerSequence)
    {
        _state = State.SynReceived;
        _rcvNxt = peerSequence + 1;
        _sndUna = _iss;
        _sndNxt = _iss + 1;
        _sendBase = _iss + 1;
        Segment(TcpFlags.Syn | TcpFlags.Ack, _iss, default);
        Arm();
    }

    public void OnSegment(TcpSegment s)
    {
        if (s.Rst)
        {
            Abort(_state == State.SynSent
                ? new NetworkException(SocketError.ConnectionRefused, $"TCP connection to {RemoteEndPoint} refused")
                : new NetworkException(SocketError.ConnectionReset, $"TCP connection to {RemoteEndPoint} was reset"));
            return;
        }

        switch (_state)
        {
            case State.SynSent:
                if (s.Syn && s.Ack && s.AcknowledgmentNumber == _iss + 1)
                {
                    _rcvNxt = s.SequenceNumber + 1;
                    _sndUna = _iss + 1;
                    _state = State.Established;
                    Disarm();
                    Segment(TcpFlags.Ack, _sndNxt, default);
                    _established.TrySetResult();
                }

                return;
            case State.SynReceived:
                if (s.Syn && !s.Ack)
                {
                    Segment(TcpFlags.Syn | TcpFlags.Ack, _iss, default); // our SYN-ACK was lost
                    return;
                }

                if (!s.Ack || s.AcknowledgmentNumber != _iss + 1)
                {
                    return;
                }

                _sndUna = _iss + 1;
                _state = State.Established;
                Disarm();
                _established.TrySetResult();
                _listener?.Ready(this);
                break;
            case State.Closed:
                if (s.Fin)
                {
                    Segment(TcpFlags.Ack, _sndNxt, default); // our last ACK was lost
                }

                return;
        }

        if (s.Syn)
        {
            Segment(TcpFlags.Ack, _sndNxt, default); // a retransmitted SYN-ACK: our ACK was lost
            return;
        }

        if (s.Ack)
        {
            OnAck(s.AcknowledgmentNumber);
        }

        var payload = s.Payload;
        if (payload.Length > 0 || s.Fin)
        {
            if (s.SequenceNumber == _rcvNxt && !_finReceived)
            {
                Append(payload);
                _rcvNxt += (uint)payload.Length;
                if (s.Fin)
                {
                    _finReceived = true;
                    _rcvNxt++;
                }

                WakeReader();
            }

            Segment(TcpFlags.Ack, _sndNxt, default); // in order or not: say what we expect next
        }

        Pump();
        MaybeClose();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        _stack.Host.Network.Scheduler.EnsureLabThread();
        if (_recvCount > 0)
        {
            return new ValueTask<int>(Take(buffer.Span));
        }

        if (_error is not null)
        {
            return ValueTask.FromException<int>(_error);
        }

        if (_finReceived || buffer.Length == 0)
        {
            return new ValueTask<int>(0);
        }

        if (_reader is not null)
        {
            throw new InvalidOperationException("a read is already pending on this lab TCP stream");
        }

        var reader = new TaskCompletionSource<int>();
        _reader = reader;
        _readBuffer = buffer;
        if (cancellationToken.CanBeCanceled)
        {
            var registration = cancellationToken.UnsafeRegister(static (s, token) =>
            {
                var c = (LabTcpConnection)s!;
                c._stack.Host.Network.Scheduler.OnLoop(static x =>
                {
                    var (conn, t) = ((LabTcpConnection, CancellationToken))x!;
                    if (conn._reader is { } r && r.TrySetCanceled(t))
                    {
                        conn._reader = null;
                        conn._readBuffer = default;
                    }
                }, (c, token));
            }, this);
            _ = reader.Task.ContinueWith(static (_, r) => ((CancellationTokenRegistration)r!).Dispose(), registration,
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        return new ValueTask<int>(reader.Task);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        _stack.Host.Network.Scheduler.EnsureLabThread();
        if (_error is not null)
        {
            return ValueTask.FromException(_error);
        }

        if (_shutdownRequested)
        {
            return ValueTask.FromException(new NetworkException(SocketError.Shutdown, "the sending side is shut down"));
        }

        if (_sendCount + buffer.Length > _send.Length)
        {
            Array.Resize(ref _send, Math.Max(_send.Length * 2, _sendCount + buffer.Length));
        }

        buffer.Span.CopyTo(_send.AsSpan(_sendCount));
        _sendCount += buffer.Length;
        Pump();
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw SyncNotSupported();

    public override void Write(byte[] buffer, int offset, int count) => throw SyncNotSupported();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public void ShutdownSend()
    {
        _stack.Host.Network.Scheduler.EnsureLabThread();
        if (_shutdownRequested || _state == State.Closed)
        {
            return;
        }

        _shutdownRequested = true;
        Pump();
    }

    public override ValueTask DisposeAsync()
    {
        ShutdownSend();
        _stack.Host.Network.Scheduler.OnLoop(static s =>
        {
            var c = (LabTcpConnection)s!;
            c._recvCount = 0;
            c.WakeReader();
        }, this);
        return ValueTask.CompletedTask;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ShutdownSend();
        }

        base.Dispose(disposing);
    }

    private static NotSupportedException SyncNotSupported() =>
        new("lab TCP streams are asynchronous only: a blocking read would stop the lab's single thread");

    private void OnAck(uint ack)
    {
        // Acceptable ACK: SND.UNA < ack <= SND.NXT (RFC 9293 3.10.7.4), in sequence-number arithmetic.
        if ((int)(ack - _sndUna) <= 0 || (int)(ack - _sndNxt) > 0)
        {
            return;
        }

        var dataEnd = _sendBase + (uint)_sendCount;
        var ackedData = (int)((int)(ack - dataEnd) > 0 ? dataEnd - _sendBase : ack - _sendBase);
        if (ackedData > 0)
        {
            Buffer.BlockCopy(_send, ackedData, _send, 0, _sendCount - ackedData);
            _sendCount -= ackedData;
            _sendBase += (uint)ackedData;
        }

        if (_finSent && ack == dataEnd + 1)
        {
            _finAcked = true;
        }

        _sndUna = ack;
        _retransmissions = 0;
        _rto = InitialRto;
        if (_sndUna == _sndNxt)
        {
            Disarm();
        }
        else
        {
            Arm();
        }
    }

    private void Pump()
    {
        if (_state != State.Established)
        {
            return;
        }

        var dataEnd = _sendBase + (uint)_sendCount;
        while ((int)(dataEnd - _sndNxt) > 0 && _sndNxt - _sndUna < Window)
        {
            var offset = (int)(_sndNxt - _sendBase);
            var length = Math.Min(Math.Min(_mss, _sendCount - offset), (int)(Window - (_sndNxt - _sndUna)));
            if (length <= 0)
            {
                break;
            }

            Segment(TcpFlags.Ack | TcpFlags.Psh, _sndNxt, _send.AsSpan(offset, length));
            _sndNxt += (uint)length;
            Arm();
        }

        if (_shutdownRequested && !_finSent && _sndNxt == dataEnd)
        {
            _finSent = true;
            Segment(TcpFlags.Fin | TcpFlags.Ack, _sndNxt, default);
            _sndNxt++;
            Arm();
        }
    }

    private void OnTimeout()
    {
        if (_state == State.Closed)
        {
            _stack.Remove(this); // end of the quiet time after close
            return;
        }

        if (++_retransmissions > MaxRetransmissions)
        {
            Abort(new NetworkException(SocketError.TimedOut, $"TCP connection to {RemoteEndPoint} timed out"));
            return;
        }

        _rto = TimeSpan.FromTicks(Math.Min(_rto.Ticks * 2, MaxRto.Ticks));
        switch (_state)
        {
            case State.SynSent:
                Segment(TcpFlags.Syn, _iss, default);
                Arm();
                break;
            case State.SynReceived:
                Segment(TcpFlags.Syn | TcpFlags.Ack, _iss, default);
                Arm();
                break;
            default:
                // Go back N: resend everything from the oldest unacknowledged byte.
                _sndNxt = _sndUna;
                if (_finSent && !_finAcked)
                {
                    _finSent = false;
                }

                Pump();
                break;
        }
    }

    private void MaybeClose()
    {
        if (_state == State.Established && _finSent && _finAcked && _finReceived)
        {
            _state = State.Closed;

            // Linger a little so a retransmitted FIN still finds us and gets its ACK.
            _timer.Change(TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The connect was cancelled: drop the half-open connection quietly.</summary>
    public void Cancel() => Abort(new OperationCanceledException("the TCP connect was cancelled"));

    private void Abort(Exception error)
    {
        if (_state == State.Closed && _error is not null)
        {
            return;
        }

        _error = error;
        _state = State.Closed;
        Disarm();
        _stack.Remove(this);
        _established.TrySetException(error);
        WakeReader();
    }

    private void Append(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        if (_recvStart + _recvCount + data.Length > _recv.Length)
        {
            var bigger = new byte[Math.Max(_recv.Length, (_recvCount + data.Length) * 2)];
            _recv.AsSpan(_recvStart, _recvCount).CopyTo(bigger);
            _recv = bigger;
            _recvStart = 0;
        }

        data.CopyTo(_recv.AsSpan(_recvStart + _recvCount));
        _recvCount += data.Length;
    }

    private int Take(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, _recvCount);
        _recv.AsSpan(_recvStart, n).CopyTo(destination);
        _recvStart += n;
        _recvCount -= n;
        if (_recvCount == 0)
        {
            _recvStart = 0;
        }

        return n;
    }

    private void WakeReader()
    {
        if (_reader is not { } r)
        {
            return;
        }

        if (_recvCount > 0)
        {
            _reader = null;
            r.TrySetResult(Take(_readBuffer.Span));
        }
        else if (_error is not null)
        {
            _reader = null;
            r.TrySetException(_error);
        }
        else if (_finReceived)
        {
            _reader = null;
            r.TrySetResult(0);
        }
    }

    private void Segment(TcpFlags flags, uint sequence, ReadOnlySpan<byte> payload) =>
        _stack.SendSegment(_local, _localPort, _remote, _remotePort, sequence,
            _state == State.SynSent && (flags & TcpFlags.Ack) == 0 ? 0 : _rcvNxt, flags, payload);

    private void Arm() => _timer.Change(_rto, Timeout.InfiniteTimeSpan);

    private void Disarm() => _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
}
