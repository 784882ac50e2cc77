using NatKit.Nat;
using NatKit.Nat.Ports;
using NatKit.Packets;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping;

/// <summary>
/// Sends a <see cref="PortMappingHandler"/>'s announcements to the LAN after a start-up, a restart or an external
/// address change (RFC 6886 section 3.2.1, RFC 6887 section 14.1.3): the NAT-PMP external address response and the
/// PCP unsolicited ANNOUNCE (whichever the policy offers), from the inside address's port 5351 to 224.0.0.1:5350,
/// ten times on <see cref="PortMappingHandler.AnnouncementSchedule"/> (at once, then gaps doubling from 250 ms).
/// Clients that hear the epoch go back or the address change renew their mappings at once.
/// The waits are on the injected clock; the writing and sending run on the engine's thread through
/// <see cref="EngineCall"/> (the lab's loop, or a gateway's data plane), since the epoch is the handler's state.
/// </summary>
public sealed class PortMappingAnnouncer : IDisposable
{
    /// <summary>Where announcements go: the all-hosts group, the clients' port (RFC 6886 section 3.2.1; RFC 6887
    /// sections 8.1 and 14.1.3 use the same).</summary>
    public static readonly NatEndpoint Group = new(Ipv4Address.Parse("224.0.0.1"), Pcp.Pcp.ClientPort);

    private static readonly byte[] Nothing = [];

    private readonly PortMappingHandler _handler;
    private readonly EngineCall _engine;
    private readonly InsideUdpSender _send;
    private readonly TimeProvider _time;
    private CancellationTokenSource? _run;
    private long _sent;

    /// <param name="handler">The server whose epoch and address are announced.</param>
    /// <param name="engine">Runs a function on the engine's thread with the engine time.</param>
    /// <param name="send">Sends a datagram from the NAT's inside address onto the LAN (on the engine's thread).</param>
    /// <param name="time">The clock the schedule waits on.</param>
    public PortMappingAnnouncer(PortMappingHandler handler, EngineCall engine, InsideUdpSender send, TimeProvider time)
    {
        _handler = handler ?? throw new ArgumentNullException(nameof(handler));
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _send = send ?? throw new ArgumentNullException(nameof(send));
        _time = time ?? throw new ArgumentNullException(nameof(time));
    }

    /// <summary>Announcement datagrams sent so far (NAT-PMP and PCP each count).</summary>
    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>The run in progress (completed when there is none).</summary>
    public Task Running { get; private set; } = Task.CompletedTask;

    /// <summary>Starts the ten announcements (after start-up), replacing a run still in progress.</summary>
    public Task Start()
    {
        _run?.Cancel();
        _run?.Dispose();
        _run = new CancellationTokenSource();
        return Running = RunAsync(_run.Token);
    }

    /// <summary>The server lost its state or its external address changed: the epoch starts over (on the engine's
    /// thread) and the announcements go out again, so clients renew (RFC 6886 section 3.6, RFC 6887 section 8.5).</summary>
    public async Task RestartAsync()
    {
        await _engine(now =>
        {
            _handler.ResetEpoch(now);
            return Nothing;
        }).ConfigureAwait(false);
        _ = Start();
    }

    private async Task RunAsync(CancellationToken stop)
    {
        try
        {
            var previous = TimeSpan.Zero;
            foreach (var at in PortMappingHandler.AnnouncementSchedule)
            {
                if (at > previous)
                {
                    await Task.Delay(at - previous, _time, stop).ConfigureAwait(false);
                }

                previous = at;
                await _engine(now =>
                {
                    if (!stop.IsCancellationRequested)
                    {
                        Send(now);
                    }

                    return Nothing;
                }).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
            // the gateway stopped under a run: nothing left to announce to
        }
    }

    /// <summary>One round: the NAT-PMP and the PCP announcement, each when offered.</summary>
    private void Send(long now)
    {
        Span<byte> payload = stackalloc byte[Pcp.Pcp.HeaderLength];
        var n = _handler.WriteNatPmpAnnouncement(payload, now);
        if (n > 0)
        {
            _send(PortMappingHandler.Port, Group, payload[..n]);
            Interlocked.Increment(ref _sent);
        }

        n = _handler.WritePcpAnnouncement(payload, now);
        if (n > 0)
        {
            _send(PortMappingHandler.Port, Group, payload[..n]);
            Interlocked.Increment(ref _sent);
        }
    }

    /// <summary>Stops a run in progress.</summary>
    public void Dispose()
    {
        _run?.Cancel();
        _run?.Dispose();
        _run = null;
    }
}
