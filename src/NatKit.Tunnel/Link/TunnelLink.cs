using System.Buffers;
using System.Net.WebSockets;
using NatKit.Linux;
using NatKit.Packets;
using NatKit.Tunnel.Framing;

namespace NatKit.Tunnel.Link;

/// <summary>What a <see cref="TunnelLink"/> has carried.</summary>
public readonly record struct TunnelLinkStats(long PacketsIn, long BytesIn, long PacketsOut, long BytesOut,
    long Refused, long OutboundDropped, long Malformed, long Pings, long Pongs);

/// <summary>Whether a side takes a packet a link received (the server's anti-spoofing and limits).</summary>
internal delegate bool PacketAdmission(Span<byte> packet);

/// <summary>
/// One WebSocket carrying the tunnel's messages once the hello and welcome are done, the same on the client and the
/// server: a receive loop that turns messages into packets in <see cref="Inbound"/> (answering pings, ending on a
/// goodbye or a broken frame) and a send loop that turns <see cref="Outbound"/> into messages. The data plane talks
/// to it only through the two queues: <see cref="TrySend"/> from the data plane's thread, <see cref="Inbound"/> read
/// there after <see cref="OnReadable"/> said something came.
/// </summary>
/// <remarks>
/// Idle links hold no buffer: each receive starts with a zero-byte read and rents its message buffer only when a
/// message has begun. A full <see cref="Inbound"/> stops the receive loop until the data plane takes a packet, so a
/// fast sender is slowed by TCP's own flow control instead of losing packets. A full <see cref="Outbound"/> drops
/// (counted): the data plane never waits.
/// </remarks>
internal sealed class TunnelLink
{
    private readonly WebSocket _socket;
    private readonly TimeProvider _time;
    private readonly AsyncSignal _sendSignal;
    private readonly CancellationTokenSource _stop = new();
    private TunnelNotice? _goodbye;
    private long _lastReceived;

    private long _packetsIn;
    private long _bytesIn;
    private long _packetsOut;
    private long _bytesOut;
    private long _refused;
    private long _outboundDropped;
    private long _malformed;
    private long _pings;
    private long _pongs;

    /// <param name="socket">The WebSocket, after the hello and welcome.</param>
    /// <param name="offloads">Both sides said they take offload messages.</param>
    /// <param name="time">The clock (the lab's virtual one in the lab).</param>
    /// <param name="queuePackets">Most packets in each queue.</param>
    /// <param name="queueBytes">Most bytes in each queue.</param>
    /// <param name="loop">Where the loops resume when the data plane wakes them: null for the thread pool (a Linux
    /// data-plane thread), the lab's loop (<c>LabScheduler.SynchronizationContext</c>) in the lab.</param>
    public TunnelLink(WebSocket socket, bool offloads, TimeProvider time, int queuePackets = 1024,
        long queueBytes = 4 << 20, SynchronizationContext? loop = null)
    {
        _sendSignal = new AsyncSignal(loop);
        _socket = socket ?? throw new ArgumentNullException(nameof(socket));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        Offloads = offloads;
        Inbound = new PacketQueue(queuePackets, queueBytes, loop);
        Outbound = new PacketQueue(queuePackets, queueBytes, loop);
        _lastReceived = time.GetTimestamp();
    }

    /// <summary>True when both sides said they take offload messages.</summary>
    public bool Offloads { get; }

    /// <summary>Packets received and admitted, for the data plane.</summary>
    public PacketQueue Inbound { get; }

    /// <summary>Messages waiting to be sent.</summary>
    public PacketQueue Outbound { get; }

    /// <summary>Called (on the receive loop's thread) when <see cref="Inbound"/> goes from empty to non-empty.</summary>
    public Action? OnReadable { get; set; }

    /// <summary>Decides whether a received packet is taken (and may rewrite it in place); null takes every one.</summary>
    public PacketAdmission? Admit { get; set; }

    /// <summary>Called with the payload of every pong (the client measures its round trip with it).</summary>
    public Action<ulong>? OnPong { get; set; }

    /// <summary>The goodbye the other side sent before it closed, if any.</summary>
    public TunnelNotice? Goodbye => _goodbye;

    /// <summary>When the last message of any kind arrived (a <see cref="TimeProvider"/> timestamp).</summary>
    public long LastReceived => Volatile.Read(ref _lastReceived);

    public WebSocket Socket => _socket;

    public TunnelLinkStats Stats => new(Volatile.Read(ref _packetsIn), Volatile.Read(ref _bytesIn),
        Volatile.Read(ref _packetsOut), Volatile.Read(ref _bytesOut), Volatile.Read(ref _refused),
        Volatile.Read(ref _outboundDropped), Volatile.Read(ref _malformed), Volatile.Read(ref _pings),
        Volatile.Read(ref _pongs));

    /// <summary>
    /// Queues a packet from the data plane. With offloads agreed, a super-packet or a partial checksum goes as one
    /// offload message; without, a super-packet is cut into segments (<paramref name="scratch"/> holds them) and a
    /// partial checksum is finished first. False when the queue was full (dropped, counted). Call
    /// <see cref="SignalSender"/> after a batch.
    /// </summary>
    public bool TrySend(Span<byte> packet, in VirtioNetHeader offload, byte[] scratch, int[] lengths)
    {
        if (offload.Flags == 0 && !offload.IsGso)
        {
            return Enqueue(packet, VirtioNetHeader.None, 0);
        }

        if (Offloads)
        {
            return Enqueue(packet, offload, TunnelMessage.OffloadPrefix);
        }

        if (offload.IsGso)
        {
            var count = GsoSegmenter.Split(packet, offload, scratch, 0, lengths);
            if (count < 0)
            {
                Interlocked.Increment(ref _outboundDropped);
                return false;
            }

            var all = true;
            var at = 0;
            for (var i = 0; i < count; i++)
            {
                all &= Enqueue(scratch.AsSpan(at, lengths[i]), VirtioNetHeader.None, 0);
                at += lengths[i];
            }

            return all;
        }

        _ = GsoSegmenter.CompleteChecksum(packet, offload);
        return Enqueue(packet, VirtioNetHeader.None, 0);
    }

    /// <summary>Queues a control message (ping, pong, goodbye) and wakes the send loop.</summary>
    public bool TrySendControl(ReadOnlySpan<byte> message)
    {
        var queued = Enqueue(message, VirtioNetHeader.None, 0);
        _sendSignal.Set();
        return queued;
    }

    /// <summary>Wakes the send loop (after a batch of <see cref="TrySend"/>).</summary>
    public void SignalSender() => _sendSignal.Set();

    /// <summary>
    /// Runs the receive and send loops until the connection ends (closed, broken, a goodbye, a framing error, or
    /// <see cref="Stop"/>). Both queues are emptied at the end: nothing of this link reaches the next one.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        var sending = SendLoopAsync(linked.Token);
        try
        {
            await ReceiveLoopAsync(linked.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // the connection broke or we were told to stop: both end the link the same way
        }
        finally
        {
            _stop.Cancel(); // not CancelAsync: its callbacks would leave the lab's loop
            _sendSignal.Set();
            try
            {
                await sending.ConfigureAwait(false);
            }
            catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
            {
            }

            _closeTimer?.Dispose();
            _socket.Abort();
            _socket.Dispose();
            _ = Inbound.Clear();
            _ = Outbound.Clear();
            Inbound.RoomSignal.Set();
        }
    }

    /// <summary>
    /// Ends the link: sends <paramref name="goodbye"/> (if any) after what is queued, starts the WebSocket close, and
    /// lets <see cref="RunAsync"/> finish.
    /// </summary>
    public void Stop(TunnelNotice? goodbye = null)
    {
        if (goodbye is not null)
        {
            Span<byte> message = stackalloc byte[TunnelNotice.MaxLength];
            _ = TrySendControl(message[..goodbye.Write(message)]);
            _stopAfterSend = true;
            _sendSignal.Set();
            return;
        }

        _stop.Cancel();
    }

    private volatile bool _stopAfterSend;

    private bool Enqueue(ReadOnlySpan<byte> packet, in VirtioNetHeader offload, int room)
    {
        if (Outbound.TryEnqueue(packet, offload, room, out _))
        {
            return true;
        }

        Interlocked.Increment(ref _outboundDropped);
        return false;
    }

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await SendAllAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // a send that failed ends the link: the receive loop is cancelled below
        }
        finally
        {
            if (_closeSent && !_stop.IsCancellationRequested)
            {
                // our close is out after the goodbye: the receive loop ends when the peer answers it, or the timer
                // cuts the link (aborting at once would reset the connection and could lose the goodbye)
                _closeTimer = _time.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), _stop,
                    TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
            }
            else
            {
                _stop.Cancel();
            }
        }
    }

    private volatile bool _closeSent;
    private ITimer? _closeTimer;

    // Who sends: 0 nobody, 1 the data plane (SendFromDataPlane) or the send loop. The data plane sends on its own
    // thread while the socket takes messages at once; a send that has to wait is handed over (_handover) to the send
    // loop, which finishes it and sends on. One thread hop fewer per packet than queueing every message for the loop.
    private int _sender;
    private ValueTask _handover;
    private QueuedPacket _handoverPacket;
    private volatile bool _hasHandover;

    /// <summary>
    /// Sends what <see cref="TrySend"/> queued, on the calling (data-plane) thread, as long as the socket takes each
    /// message at once; the first send that has to wait, and everything after it, is left to the send loop. When the
    /// send loop is busy already, it only wakes it. Call it after a batch.
    /// </summary>
    public void SendFromDataPlane()
    {
        if (_stopAfterSend || _stop.IsCancellationRequested || Interlocked.CompareExchange(ref _sender, 1, 0) != 0)
        {
            _sendSignal.Set();
            return;
        }

        while (Outbound.TryDequeue(out var packet, out _))
        {
            var handedOver = false;
            try
            {
                var sending = SendMessageAsync(packet, _stop.Token);
                if (!sending.IsCompleted)
                {
                    _handoverPacket = packet;
                    _handover = sending;
                    handedOver = true;
                    _hasHandover = true; // the send loop now holds _sender, and releases the packet
                    _sendSignal.Set();
                    return;
                }

                sending.GetAwaiter().GetResult();
                _packetsOut++;
                _bytesOut += packet.Length;
            }
            catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                Interlocked.Increment(ref _outboundDropped); // the link is breaking: the send loop's next send ends it
                break;
            }
            finally
            {
                if (!handedOver)
                {
                    PacketQueue.Release(packet);
                }
            }
        }

        Volatile.Write(ref _sender, 0);
        if (Outbound.Count > 0)
        {
            _sendSignal.Set(); // a control message came in meanwhile
        }
    }

    /// <summary>One queued packet or control message as one binary message.</summary>
    private ValueTask SendMessageAsync(in QueuedPacket packet, CancellationToken cancellationToken)
    {
        ReadOnlyMemory<byte> message;
        if (packet.Room > 0)
        {
            OffloadFrame.WritePrefix(packet.Buffer, packet.Offload);
            message = packet.WithRoom;
        }
        else
        {
            message = packet.Buffer.AsMemory(0, packet.Length);
        }

        return _socket.SendAsync(message, WebSocketMessageType.Binary, endOfMessage: true, cancellationToken);
    }

    private async Task SendAllAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            bool holding;
            if (_hasHandover)
            {
                _hasHandover = false;
                var packet = _handoverPacket;
                _handoverPacket = default;
                try
                {
                    await _handover.ConfigureAwait(false);
                    _packetsOut++;
                    _bytesOut += packet.Length;
                }
                finally
                {
                    PacketQueue.Release(packet);
                }

                holding = true; // the data plane handed _sender over with it
            }
            else
            {
                holding = Interlocked.CompareExchange(ref _sender, 1, 0) == 0;
            }

            if (holding && await DrainAsync(cancellationToken).ConfigureAwait(false))
            {
                return; // closed after the goodbye
            }

            await _sendSignal.WaitAsync().ConfigureAwait(false); // see AsyncSignal: never resumes on the setter's thread
        }
    }

    /// <summary>Sends until the queue is empty, holding <see cref="_sender"/>, then lets go of it (or, after a goodbye,
    /// closes and keeps it, so nothing is sent after the close). True when closed.</summary>
    private async Task<bool> DrainAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            while (Outbound.TryDequeue(out var packet, out _))
            {
                try
                {
                    await SendMessageAsync(packet, cancellationToken).ConfigureAwait(false);
                    _packetsOut++;
                    _bytesOut += packet.Length;
                }
                finally
                {
                    PacketQueue.Release(packet);
                }
            }

            if (_stopAfterSend)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _time);
                try
                {
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token)
                        .ConfigureAwait(false);
                    _closeSent = true;
                }
                catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
                {
                }

                return true;
            }

            Volatile.Write(ref _sender, 0);
            if (Outbound.Count == 0 || Interlocked.CompareExchange(ref _sender, 1, 0) != 0)
            {
                return false;
            }
        }
    }

    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            // A zero-byte read first: an idle link holds no buffer.
            var first = await _socket.ReceiveAsync(Memory<byte>.Empty, cancellationToken).ConfigureAwait(false);
            if (first.MessageType == WebSocketMessageType.Close)
            {
                return;
            }

            var buffer = ArrayPool<byte>.Shared.Rent(TunnelMessage.MaxMessage);
            try
            {
                var length = 0;
                var result = first;
                while (!result.EndOfMessage)
                {
                    if (length == TunnelMessage.MaxMessage)
                    {
                        _malformed++;
                        await CloseAsync(WebSocketCloseStatus.MessageTooBig, cancellationToken).ConfigureAwait(false);
                        return;
                    }

                    result = await _socket.ReceiveAsync(buffer.AsMemory(length, TunnelMessage.MaxMessage - length),
                        cancellationToken).ConfigureAwait(false);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }

                    length += result.Count;
                }

                Volatile.Write(ref _lastReceived, _time.GetTimestamp());
                if (result.MessageType != WebSocketMessageType.Binary)
                {
                    _malformed++;
                    await CloseAsync(WebSocketCloseStatus.InvalidMessageType, cancellationToken).ConfigureAwait(false);
                    return;
                }

                if (!await HandleAsync(buffer, length, cancellationToken).ConfigureAwait(false))
                {
                    return;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>Handles one message; false ends the link.</summary>
    private async ValueTask<bool> HandleAsync(byte[] buffer, int length, CancellationToken cancellationToken)
    {
        var message = buffer.AsSpan(0, length);
        switch (TunnelMessage.Classify(message))
        {
            case TunnelMessageKind.Ipv4Packet:
            case TunnelMessageKind.Ipv6Packet:
                return await DeliverAsync(buffer, 0, length, VirtioNetHeader.None, cancellationToken).ConfigureAwait(false);
            case TunnelMessageKind.Offload:
                if (!Offloads || !OffloadFrame.TryParse(message, out var frame))
                {
                    _malformed++;
                    return true; // one bad packet; the framing itself is intact
                }

                return await DeliverAsync(buffer, TunnelMessage.OffloadPrefix, frame.Packet.Length, frame.Header,
                    cancellationToken).ConfigureAwait(false);
            case TunnelMessageKind.Ping:
                if (TunnelMessage.TryReadPing(message, out var payload))
                {
                    _pings++;
                    Span<byte> answer = stackalloc byte[TunnelMessage.PingLength];
                    _ = TrySendControl(answer[..TunnelMessage.WritePing(answer, payload, pong: true)]);
                }

                return true;
            case TunnelMessageKind.Pong:
                if (TunnelMessage.TryReadPing(message, out var echoed))
                {
                    _pongs++;
                    OnPong?.Invoke(echoed);
                }

                return true;
            case TunnelMessageKind.Bye:
                _goodbye = TunnelNotice.TryParse(message, out var notice, out _) ? notice : null;
                return false;
            case TunnelMessageKind.Unknown:
                return true; // a later version's message: not ours to understand
            default:
                _malformed++;
                await CloseAsync(WebSocketCloseStatus.ProtocolError, cancellationToken).ConfigureAwait(false);
                return false;
        }
    }

    private async ValueTask<bool> DeliverAsync(byte[] buffer, int offset, int length, VirtioNetHeader offload,
        CancellationToken cancellationToken)
    {
        var packet = buffer.AsSpan(offset, length);
        if (Admit is { } admit && !admit(packet))
        {
            _refused++;
            return true;
        }

        _packetsIn++;
        _bytesIn += length;
        while (true)
        {
            if (Inbound.TryEnqueue(buffer.AsSpan(offset, length), offload, 0, out var wasEmpty))
            {
                if (wasEmpty)
                {
                    OnReadable?.Invoke();
                }

                return true;
            }

            if (Inbound.WaitForRoom(length))
            {
                await Inbound.RoomSignal.WaitAsync().ConfigureAwait(false);
                if (cancellationToken.IsCancellationRequested)
                {
                    return false;
                }
            }
        }
    }

    private async Task CloseAsync(WebSocketCloseStatus status, CancellationToken cancellationToken)
    {
        try
        {
            await _socket.CloseOutputAsync(status, null, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }
}
