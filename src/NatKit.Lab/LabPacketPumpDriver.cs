using NatKit.Nat;
using NatKit.Nat.Ports;

namespace NatKit.Lab;

/// <summary>
/// Runs a <see cref="PacketPump"/> (a NAT engine, or plain forwarding, between two packet ports) on the lab's loop,
/// as <c>GatewayDataPlane</c> runs one on a Linux thread: a port that signals it has packets gets a round scheduled
/// at the current virtual time (one at a time; a full batch schedules the next), and while the engine holds sessions
/// its timers run every <see cref="TickInterval"/> of virtual time, as a lab router's do. Engine work from elsewhere
/// (<see cref="InvokeAsync{T}"/>) runs at once, since everything in the lab is on one thread.
/// </summary>
public sealed class LabPacketPumpDriver : IPacketPumpDriver
{
    private static readonly Action<object, long> RoundCallback = static (state, _) => ((LabPacketPumpDriver)state).Round();
    private static readonly Action<object, long> TickCallback = static (state, _) => ((LabPacketPumpDriver)state).OnTick();

    private readonly VirtualNetwork _network;
    private bool _roundScheduled;
    private bool _tickScheduled;
    private bool _stopped;

    /// <param name="network">The lab whose loop runs the pump.</param>
    /// <param name="engine">The engine, or null to forward unchanged between the ports.</param>
    /// <param name="inside">The inside port.</param>
    /// <param name="outside">The outside port.</param>
    public LabPacketPumpDriver(VirtualNetwork network, NatEngine? engine, IPacketPort inside, IPacketPort outside)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        Pump = new PacketPump(engine, inside, outside);
        foreach (var port in new[] { inside, outside })
        {
            if (port is ISignalingPacketPort signaling)
            {
                signaling.SetWake(Wake);
            }
        }
    }

    public PacketPump Pump { get; }

    /// <summary>How often the engine's timers run while it holds sessions.</summary>
    public TimeSpan TickInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>The engine's clock: virtual milliseconds.</summary>
    public long Now => _network.Scheduler.NowTicks / TimeSpan.TicksPerMillisecond;

    public Task<T> InvokeAsync<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        _network.Scheduler.EnsureLabThread();
        return Task.FromResult(action());
    }

    /// <summary>Stops scheduling rounds and ticks (what is scheduled already finds nothing to do).</summary>
    public void Stop() => _stopped = true;

    private void Wake()
    {
        if (!_roundScheduled && !_stopped)
        {
            _roundScheduled = true;
            _network.Scheduler.Schedule(0, RoundCallback, this);
        }
    }

    private void Round()
    {
        _roundScheduled = false;
        if (_stopped)
        {
            return;
        }

        _ = Pump.RunBatch(Now, out var more);
        if (more)
        {
            Wake();
        }

        EnsureTicking();
    }

    private void EnsureTicking()
    {
        if (!_tickScheduled && Pump.Engine is { SessionCount: > 0 })
        {
            _tickScheduled = true;
            _network.Scheduler.Schedule(TickInterval.Ticks, TickCallback, this, 0, background: true);
        }
    }

    private void OnTick()
    {
        _tickScheduled = false;
        if (_stopped)
        {
            return;
        }

        Pump.Tick(Now);
        EnsureTicking();
    }
}
