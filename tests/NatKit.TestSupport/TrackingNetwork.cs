using System.Net;
using NatKit.Net;

namespace NatKit.TestSupport;

/// <summary>
/// The real network on loopback that counts what the code under test opened and has not closed yet: UDP sockets,
/// TCP listeners and connections (the ones it opened and the ones its listeners accepted), and timers on its
/// clock. A test of "nothing left behind" runs the code on it and checks <see cref="Open"/> is empty at the end.
/// </summary>
public sealed class TrackingNetwork : INetwork
{
    private readonly Lock _gate = new();
    private readonly Dictionary<object, string> _open = new(ReferenceEqualityComparer.Instance);
    private readonly CountingTime _time;

    public TrackingNetwork()
    {
        _time = new CountingTime(this);
    }

    public TimeProvider TimeProvider => _time;

    public IReadOnlyList<IPAddress> LocalAddresses => SystemNetwork.Instance.LocalAddresses;

    /// <summary>What is open now, one line each ("udp 127.0.0.1:5000", "timer", ...).</summary>
    public IReadOnlyList<string> Open
    {
        get
        {
            lock (_gate)
            {
                return [.. _open.Values];
            }
        }
    }

    public async ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default) =>
        new Udp(await SystemNetwork.Instance.BindUdpAsync(localEndPoint, cancellationToken), this);

    public async ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) =>
        new Listener(await SystemNetwork.Instance.ListenTcpAsync(localEndPoint, backlog, cancellationToken), this);

    public async ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint,
        IPEndPoint? localEndPoint = null, CancellationToken cancellationToken = default) =>
        new Connection(await SystemNetwork.Instance.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken),
            this);

    private void Opened(object item, string what)
    {
        lock (_gate)
        {
            _open[item] = what;
        }
    }

    private void Closed(object item)
    {
        lock (_gate)
        {
            _open.Remove(item);
        }
    }

    private sealed class Udp : IDatagramSocket
    {
        private readonly IDatagramSocket _inner;
        private readonly TrackingNetwork _owner;

        public Udp(IDatagramSocket inner, TrackingNetwork owner)
        {
            _inner = inner;
            _owner = owner;
            owner.Opened(this, $"udp {inner.LocalEndPoint}");
        }

        public IPEndPoint LocalEndPoint => _inner.LocalEndPoint;

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default) =>
            _inner.SendToAsync(datagram, remoteEndPoint, cancellationToken);

        public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default) =>
            _inner.ReceiveFromAsync(buffer, cancellationToken);

        public void Dispose()
        {
            _owner.Closed(this);
            _inner.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            _owner.Closed(this);
            return _inner.DisposeAsync();
        }
    }

    private sealed class Listener : IStreamListener
    {
        private readonly IStreamListener _inner;
        private readonly TrackingNetwork _owner;

        public Listener(IStreamListener inner, TrackingNetwork owner)
        {
            _inner = inner;
            _owner = owner;
            owner.Opened(this, $"tcp listener {inner.LocalEndPoint}");
        }

        public IPEndPoint LocalEndPoint => _inner.LocalEndPoint;

        public async ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default) =>
            new Connection(await _inner.AcceptAsync(cancellationToken), _owner);

        public ValueTask DisposeAsync()
        {
            _owner.Closed(this);
            return _inner.DisposeAsync();
        }
    }

    private sealed class Connection : IStreamConnection
    {
        private readonly IStreamConnection _inner;
        private readonly TrackingNetwork _owner;

        public Connection(IStreamConnection inner, TrackingNetwork owner)
        {
            _inner = inner;
            _owner = owner;
            owner.Opened(this, $"tcp {inner.LocalEndPoint} -> {inner.RemoteEndPoint}");
        }

        public Stream Stream => _inner.Stream;

        public IPEndPoint LocalEndPoint => _inner.LocalEndPoint;

        public IPEndPoint RemoteEndPoint => _inner.RemoteEndPoint;

        public void ShutdownSend() => _inner.ShutdownSend();

        public ValueTask DisposeAsync()
        {
            _owner.Closed(this);
            return _inner.DisposeAsync();
        }
    }

    /// <summary>The system clock, recording the timers made on it until they are disposed.</summary>
    private sealed class CountingTime(TrackingNetwork owner) : TimeProvider
    {
        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            new Counted(System.CreateTimer(callback, state, dueTime, period), owner);

        private sealed class Counted : ITimer
        {
            private readonly ITimer _inner;
            private readonly TrackingNetwork _owner;

            public Counted(ITimer inner, TrackingNetwork owner)
            {
                _inner = inner;
                _owner = owner;
                owner.Opened(this, "timer");
            }

            public bool Change(TimeSpan dueTime, TimeSpan period) => _inner.Change(dueTime, period);

            public void Dispose()
            {
                _owner.Closed(this);
                _inner.Dispose();
            }

            public ValueTask DisposeAsync()
            {
                Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }
}
