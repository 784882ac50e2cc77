using System.Net;
using NatKit.Net;
using NatKit.Stun;

namespace NatKit.Turn.Server;

/// <summary>The edge of the request path: the handler decides (<see cref="TurnRequestHandler"/>), this carries
/// its actions out: relays bound and served, allocations put in and taken out of the 5-tuple tables, answers and
/// Send indications' data sent.</summary>
public sealed partial class TurnServer
{
    /// <summary>A STUN message from a client: requests are answered, Send indications relayed, the rest ignored.</summary>
    private async ValueTask HandleStunAsync(ReadOnlyMemory<byte> data, ClientLink link, Allocation? allocation,
        int udpIndex)
    {
        var answer = _handler.Handle(data.Span, link, allocation);
        switch (answer.Action)
        {
            case TurnAction.SendToPeer:
                if (answer.Allocation!.RelayFor(answer.Peer!.Address) is { } relay)
                {
                    await SendToPeerAsync(relay, data.Slice(answer.Offset, answer.Length), answer.Peer);
                }

                return;
            case TurnAction.OpenRelay:
                await link.SendAsync(await OpenRelayAsync(answer.Pending!, link, udpIndex));
                return;
            case TurnAction.CloseRelay:
                RemoveFromTables(answer.Allocation!);
                CloseRelays(answer.Allocation!);
                await link.SendAsync(answer.Response!);
                _handler.AnswerSent();
                return;
            default:
                if (answer.Response is not null)
                {
                    await link.SendAsync(answer.Response);
                }

                return;
        }
    }

    /// <summary>Binds the relays an admitted Allocate needs, registers the allocation under its 5-tuple and starts
    /// serving it; returns the answer (success, or 508 when no relay could be bound).</summary>
    private async ValueTask<byte[]> OpenRelayAsync(PendingAllocation pending, ClientLink link, int udpIndex)
    {
        var allocation = pending.Allocation;
        var registered = false;
        IDatagramSocket? pairHold = null; // ours to close until the reservation holds it
        try
        {
            var pairPort = 0;
            var v6Failed = false;
            if (pending.Claimed is { } reservation)
            {
                // The socket that has held the reserved port since the reservation was made (none in handler-only use).
                var socket = reservation.Hold ?? await BindAsync(reservation.Family, reservation.Port);
                if (socket is null)
                {
                    return _handler.AbandonAllocate(pending); // the port goes back with the allocation
                }

                Attach(allocation, socket, reservation.Family, reservation.Port);
            }
            else
            {
                var (socket, port, pair, hold) = await BindRelayAsync(pending.Family, pending.EvenPort, pending.ReservePair);
                pairHold = hold;
                if (socket is null)
                {
                    return _handler.AbandonAllocate(pending);
                }

                Attach(allocation, socket, pending.Family, port);
                pairPort = pair;
                if (pending.Additional)
                {
                    var (v6, v6Port, _, _) = _handler.Ledger.HasV6
                        ? await BindRelayAsync(StunAddress.FamilyIPv6, false, false)
                        : (null, 0, 0, null);
                    if (v6 is null)
                    {
                        v6Failed = true;
                    }
                    else
                    {
                        Attach(allocation, v6, StunAddress.FamilyIPv6, v6Port);
                    }
                }
            }

            var response = _handler.CompleteAllocate(pending, pairPort, v6Failed, pairHold);
            pairHold = null; // the reservation's now: closed when it is claimed by no one, or ends with this allocation
            if (link is StreamClientLink s)
            {
                s.Watchdog.BeginLiveState();
                _streamAllocations[s] = allocation;
            }
            else
            {
                _udpAllocations[udpIndex][link.Remote] = allocation;
            }

            registered = true;
            if (allocation.RelayV4 is not null)
            {
                ServeRelay(allocation, allocation.RelayV4, v6: false);
            }

            if (allocation.RelayV6 is not null)
            {
                ServeRelay(allocation, allocation.RelayV6, v6: true);
            }

            return response;
        }
        finally
        {
            pairHold?.Dispose();
            if (!registered)
            {
                _handler.Release(allocation); // done already when abandoned: it is idempotent
                CloseRelays(allocation);
            }
        }
    }

    private static void Attach(Allocation allocation, IDatagramSocket socket, byte family, int port)
    {
        if (family == StunAddress.FamilyIPv6)
        {
            allocation.RelayV6 = socket;
            allocation.RelayPortV6 = port;
        }
        else
        {
            allocation.RelayV4 = socket;
            allocation.RelayPortV4 = port;
        }
    }

    /// <summary>Binds a relay socket on a random free port of the range (an even one for EVEN-PORT). With
    /// <paramref name="reservePair"/> the next port is bound too and returned as the hold that keeps it back, so no
    /// other program can take it before the reservation is claimed. Returns the socket, its port, the kept-back
    /// port (or 0) and its hold.</summary>
    private async ValueTask<(IDatagramSocket? Socket, int Port, int PairPort, IDatagramSocket? PairHold)> BindRelayAsync(
        byte family, bool even, bool reservePair)
    {
        for (var attempt = 0; attempt < 64; attempt++)
        {
            if (!_handler.Ledger.TryTakePort(family, even, reservePair, out var port))
            {
                return (null, 0, 0, null);
            }

            var socket = await BindAsync(family, port);
            if (socket is null)
            {
                // Another program holds it: leave it marked (it stays unavailable) and try another.
                if (reservePair)
                {
                    _handler.Ledger.ReleasePort(family, port + 1);
                }

                continue;
            }

            if (!reservePair)
            {
                return (socket, port, 0, null);
            }

            var hold = await BindAsync(family, port + 1);
            if (hold is not null)
            {
                return (socket, port, port + 1, hold);
            }

            // The pair's upper port is taken elsewhere: this even port is free again, the other stays marked.
            await socket.DisposeAsync();
            _handler.Ledger.ReleasePort(family, port);
        }

        return (null, 0, 0, null);
    }

    /// <summary>Binds the relay address of <paramref name="family"/> at <paramref name="port"/>; null when the
    /// network refuses (the caller decides what becomes of the port).</summary>
    private async ValueTask<IDatagramSocket?> BindAsync(byte family, int port)
    {
        var address = family == StunAddress.FamilyIPv6 ? _options.RelayAddressV6! : _options.RelayAddress;
        try
        {
            var socket = await _network.BindUdpAsync(new IPEndPoint(address, port));
            if (_options.RelaySocketBufferBytes > 0)
            {
                (socket as ISocketBuffers)?.TrySetBufferSizes(_options.RelaySocketBufferBytes, _options.RelaySocketBufferBytes);
            }

            return socket;
        }
        catch (NetworkException)
        {
            return null;
        }
    }
}
