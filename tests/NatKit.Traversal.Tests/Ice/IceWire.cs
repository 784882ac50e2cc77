using System.Net;
using NatKit.Traversal.Ice;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>
/// Carries the pure agents' datagrams between them in virtual time, without sockets: each (agent, socket) is bound
/// to a local address and, optionally, a public one (what the other side sees, and where packets for it arrive: a
/// full-cone mapping). A drop rule blocks paths; every datagram delivered is kept for assertions. The real network
/// and the lab's NATs are the driver's tests' business; this pins the agent's own logic.
/// </summary>
internal sealed class IceWire
{
    private readonly List<Binding> _bindings = [];
    private readonly PriorityQueue<Delivery, (TimeSpan, long)> _queue = new();
    private long _sequence;

    public TimeSpan Now { get; private set; } = TimeSpan.FromSeconds(1);

    public TimeSpan Latency { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Return true to drop a datagram from (public) source to destination.</summary>
    public Func<IPEndPoint, IPEndPoint, bool> Drop { get; set; } = (_, _) => false;

    /// <summary>Every datagram that reached an agent: its source, destination and bytes.</summary>
    public List<(IPEndPoint Source, IPEndPoint Destination, byte[] Bytes, TimeSpan At)> Delivered { get; } = [];

    /// <summary>Every datagram an agent handed out, dropped or not.</summary>
    public List<(IceAgent From, IPEndPoint Destination, byte[] Bytes, TimeSpan At)> Sent { get; } = [];

    /// <summary>Events each agent raised, in order.</summary>
    public Dictionary<IceAgent, List<IceEvent>> Events { get; } = [];

    public void Bind(IceAgent agent, int socket, IPEndPoint local, IPEndPoint? publicEndPoint = null)
    {
        _bindings.Add(new Binding(agent, socket, local, publicEndPoint ?? local));
        Events.TryAdd(agent, []);
    }

    /// <summary>Runs until <paramref name="until"/> (virtual time) or <paramref name="stop"/> is true.</summary>
    public void Run(TimeSpan until, Func<bool>? stop = null)
    {
        var agents = _bindings.Select(b => b.Agent).Distinct().ToList();
        var spins = 0;
        var last = Now;
        while (true)
        {
            spins = Now == last ? spins + 1 : 0;
            last = Now;
            if (spins > 100_000)
            {
                throw new InvalidOperationException($"an agent keeps asking to be polled at {Now} without moving on");
            }

            Drain(agents);
            if (stop?.Invoke() == true)
            {
                return;
            }

            var next = TimeSpan.MaxValue;
            if (_queue.TryPeek(out _, out var p))
            {
                next = p.Item1;
            }

            foreach (var a in agents)
            {
                var d = a.NextDeadline;
                if (d < next)
                {
                    next = d;
                }
            }

            if (next > until)
            {
                Now = until;
                return;
            }

            if (next > Now)
            {
                Now = next;
            }

            while (_queue.TryPeek(out var delivery, out var at) && at.Item1 <= Now)
            {
                _queue.Dequeue();
                Delivered.Add((delivery.Source, delivery.Destination, delivery.Bytes, Now));
                delivery.To.Agent.Receive(delivery.Bytes, delivery.Source, delivery.To.Socket, Now);
            }

            foreach (var a in agents)
            {
                if (a.NextDeadline <= Now)
                {
                    a.Poll(Now);
                }
            }
        }
    }

    /// <summary>Hands raw bytes to an agent as if they came from <paramref name="source"/>.</summary>
    public IceInputResult Inject(IceAgent agent, int socket, byte[] bytes, IPEndPoint source)
    {
        var r = agent.Receive(bytes, source, socket, Now);
        Drain(_bindings.Select(b => b.Agent).Distinct().ToList());
        return r;
    }

    /// <summary>Moves every pending transmit onto the wire and every event into <see cref="Events"/>.</summary>
    public void Drain(List<IceAgent> agents)
    {
        foreach (var agent in agents)
        {
            while (agent.TryTakeEvent(out var e))
            {
                Events[agent].Add(e);
            }

            while (agent.TryTakeTransmit(out var t))
            {
                var bytes = t.Datagram.ToArray();
                Sent.Add((agent, t.Destination, bytes, Now));
                var from = _bindings.First(b => b.Agent == agent && b.Socket == t.Socket);
                var to = _bindings.FirstOrDefault(b => b.Public.Equals(t.Destination));
                if (to is null || Drop(from.Public, t.Destination))
                {
                    continue;
                }

                _queue.Enqueue(new Delivery(to, from.Public, t.Destination, bytes), (Now + Latency, _sequence++));
            }
        }
    }

    private sealed record Binding(IceAgent Agent, int Socket, IPEndPoint Local, IPEndPoint Public);

    private sealed record Delivery(Binding To, IPEndPoint Source, IPEndPoint Destination, byte[] Bytes);
}
