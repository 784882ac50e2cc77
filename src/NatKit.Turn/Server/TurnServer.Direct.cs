using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using NatKit.Net;

namespace NatKit.Turn.Server;

/// <summary>
/// The direct data path, used when the network offers an <see cref="IDatagramPoller"/> and non-blocking sockets
/// (the real network on Linux): one thread waits on the UDP listening sockets (client to peer), and one or more
/// others each on a share of the UDP clients' relay sockets (peer to client); each receives, checks and sends
/// every datagram on its own thread, with no async receive loop, completion callback or thread-pool hop per
/// packet. Otherwise (the lab, TCP and TLS clients) each socket keeps
/// its async loop. Both paths share the checks and framing (<see cref="TryPlanChannelData"/>,
/// <see cref="TryFrameFromPeer"/>).
/// </summary>
public sealed partial class TurnServer
{
    /// <summary>Datagrams taken from one ready socket before the next socket gets its turn: enough to save
    /// readiness waits when a socket is busy, few enough to keep the others served.</summary>
    private const int ListenerBatch = 64;

    private const int RelayBatch = 16;

    /// <summary>Listening socket i has token i + 1; relay sockets get tokens from here up.</summary>
    private const long FirstRelayToken = 1L << 32;

    private readonly ConcurrentDictionary<long, PolledRelay> _polled = new();

    /// <summary>[0] waits on the listening sockets, the rest (or [0] too if it is alone) on relay sockets.</summary>
    private IDatagramPoller[] _pollers = [];
    private long _nextToken = FirstRelayToken;

    /// <summary>Threads of the direct path: one for the listening sockets and the rest for relay sockets, at
    /// least two so the two directions of a relay run in parallel.</summary>
    private static int DirectThreads => Math.Clamp(Environment.ProcessorCount, 2, 8);

    /// <summary>How many poller threads serve UDP clients (0: every socket has its own async loop).</summary>
    internal int DirectThreadCount => _pollers.Length;

    /// <summary>How many relay sockets the poller threads serve now.</summary>
    internal int PolledRelayCount => _polled.Count;

    private bool TryStartDirectLoop()
    {
        if (_udp.Count == 0 || _network is not IDatagramPollerSource source)
        {
            return false;
        }

        foreach (var s in _udp)
        {
            if (s is not INonBlockingDatagramSocket)
            {
                return false;
            }
        }

        var pollers = new List<IDatagramPoller>();
        for (var i = 0; i < DirectThreads; i++)
        {
            if (!source.TryCreatePoller(out var poller))
            {
                break;
            }

            pollers.Add(poller);
        }

        var listening = pollers.Count > 0;
        for (var i = 0; listening && i < _udp.Count; i++)
        {
            listening = pollers[0].TryAdd(_udp[i], i + 1);
        }

        if (!listening)
        {
            foreach (var p in pollers)
            {
                p.Dispose();
            }

            return false;
        }

        _pollers = [.. pollers];
        foreach (var poller in _pollers)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    DirectLoop(poller);
                }
                finally
                {
                    done.SetResult();
                }
            })
            {
                IsBackground = true,
                Name = "turn-udp",
            };
            thread.Start();
            _loops.Add(done.Task);
        }

        return true;
    }

    /// <summary>Serves a new relay socket: from the poller thread when the client is a UDP one and the socket
    /// can be polled, else with its own async loop.</summary>
    private void ServeRelay(Allocation allocation, IDatagramSocket socket, bool v6)
    {
        if (_pollers.Length > 0 && allocation.Client is UdpClientLink { Direct: not null } link
            && socket is INonBlockingDatagramSocket direct)
        {
            var token = Interlocked.Increment(ref _nextToken);
            var poller = _pollers.Length == 1 ? 0 : 1 + (int)(token % (_pollers.Length - 1));
            _polled[token] = new PolledRelay(allocation, direct, link, poller);
            if (_pollers[poller].TryAdd(socket, token))
            {
                if (v6)
                {
                    allocation.PollTokenV6 = token;
                }
                else
                {
                    allocation.PollTokenV4 = token;
                }

                return;
            }

            _polled.TryRemove(token, out _);
        }

        _ = RelayLoopAsync(allocation, socket);
    }

    /// <summary>Takes an ending allocation's relay sockets out of the poller (before they are closed).</summary>
    private void Unpoll(Allocation a)
    {
        if (a.PollTokenV4 != 0 && _polled.TryRemove(a.PollTokenV4, out var v4) && a.RelayV4 is not null)
        {
            _pollers[v4.Poller].Remove(a.RelayV4);
        }

        if (a.PollTokenV6 != 0 && _polled.TryRemove(a.PollTokenV6, out var v6) && a.RelayV6 is not null)
        {
            _pollers[v6.Poller].Remove(a.RelayV6);
        }
    }

    private void DirectLoop(IDatagramPoller poller)
    {
        var ready = new long[256];
        var clientBuffer = GC.AllocateUninitializedArray<byte>(ClientBufferSize, pinned: true);
        var relayBuffer = GC.AllocateUninitializedArray<byte>(Headroom + _options.MaxRelayPayload + 1 + 4);
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            int n;
            try
            {
                n = poller.Wait(ready, 1000);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (NetworkException e)
            {
                _logger.LogError(e, "the UDP poller failed; UDP clients are no longer served");
                return;
            }

            for (var i = 0; i < n; i++)
            {
                var token = ready[i];
                try
                {
                    if (token < FirstRelayToken)
                    {
                        ServeListener((int)token - 1, clientBuffer);
                    }
                    else if (_polled.TryGetValue(token, out var relay))
                    {
                        ServePeers(relay, relayBuffer);
                    }
                }
#pragma warning disable CA1031 // this thread serves every UDP client: nothing may end it but Dispose
                catch (Exception e)
#pragma warning restore CA1031
                {
                    _logger.LogError(e, "serving a ready UDP socket failed");
                }
            }
        }
    }

    /// <summary>Datagrams from clients on one listening socket, handled as by the async loop (with real sockets
    /// every step of it completes at once, ChannelData relayed here and now).</summary>
    private void ServeListener(int index, byte[] buffer)
    {
        var socket = (INonBlockingDatagramSocket)_udp[index];
        for (var k = 0; k < ListenerBatch; k++)
        {
            ReceivedDatagram d;
            try
            {
                if (!socket.TryReceive(buffer, out d))
                {
                    return;
                }
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            try
            {
                Complete(HandleClientDatagramAsync(index, buffer.AsMemory(0, d.Length), d.RemoteEndPoint));
            }
#pragma warning disable CA1031 // untrusted input: nothing a packet does may end the loop
            catch (Exception e)
#pragma warning restore CA1031
            {
                _logger.LogWarning(e, "packet from {Remote} failed", d.RemoteEndPoint);
            }
        }
    }

    /// <summary>Datagrams from peers on one relay socket, framed in place and sent to the UDP client.</summary>
    private void ServePeers(PolledRelay relay, byte[] buffer)
    {
        var max = _options.MaxRelayPayload;
        for (var k = 0; k < RelayBatch; k++)
        {
            ReceivedDatagram d;
            try
            {
                if (!relay.Socket.TryReceive(buffer.AsSpan(Headroom, max + 1), out d))
                {
                    return;
                }
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            try
            {
                if (!TryFrameFromPeer(relay.Allocation, buffer, d, stream: false, out var frame, out var closed))
                {
                    if (closed)
                    {
                        return;
                    }

                    continue;
                }

                if (relay.Client.TrySend(frame.Span))
                {
                    Metrics.Relayed(toPeer: false, d.Length);
                }
            }
#pragma warning disable CA1031 // nothing a peer sends may end the loop
            catch (Exception e)
#pragma warning restore CA1031
            {
                _logger.LogWarning(e, "relay datagram from {Peer} failed", d.RemoteEndPoint);
            }
        }
    }

    /// <summary>Waits for work the poller thread started; on the real network it has always completed already,
    /// and the buffer it reads is reused only after this returns.</summary>
    private static void Complete(ValueTask task)
    {
        if (task.IsCompletedSuccessfully)
        {
            task.GetAwaiter().GetResult();
        }
        else
        {
            task.AsTask().GetAwaiter().GetResult();
        }
    }

    private sealed record PolledRelay(Allocation Allocation, INonBlockingDatagramSocket Socket, UdpClientLink Client,
        int Poller);
}
