using NatKit.Nat;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>Where a gateway's link is: a TUN device name, optionally inside a named network namespace.</summary>
/// <param name="Namespace">The namespace (/run/netns/NAME), or null for the caller's own.</param>
/// <param name="Tun">The TUN device's name.</param>
public sealed record TunLink(string? Namespace, string Tun)
{
    /// <summary>Parses "NAMESPACE/TUN" or "TUN".</summary>
    public static TunLink Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        return slash < 0 ? new TunLink(null, text) : new TunLink(text[..slash], text[(slash + 1)..]);
    }

    public override string ToString() => Namespace is null ? Tun : $"{Namespace}/{Tun}";

    /// <summary>
    /// Waits until the link carries packets. When a TUN gets its reader (carrier on), the kernel swaps its no-op
    /// queueing discipline for a real one from a deferred "linkwatch" job, up to a second later; packets sent before
    /// that are dropped. Polls <c>ip link</c> for LOWER_UP, every 20 ms, for at most <paramref name="timeout"/>.
    /// </summary>
    public async Task WaitUntilUpAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        string[] args = Namespace is null ? ["-o", "link", "show", "dev", Tun] : ["-n", Namespace, "-o", "link", "show", "dev", Tun];
        while (true)
        {
            var (_, output, _) = await SystemCommand.TryRunAsync("ip", args, deadline.Token).ConfigureAwait(false);
            if (output.Contains("LOWER_UP", StringComparison.Ordinal) && !output.Contains("NO-CARRIER", StringComparison.Ordinal) &&
                output.Contains("qdisc", StringComparison.Ordinal) && !output.Contains("qdisc noop", StringComparison.Ordinal))
            {
                return;
            }

            try
            {
                await Task.Delay(20, deadline.Token).ConfigureAwait(false); // kernel state, no event to wait on here
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"{this} did not come up within {timeout}: {output.Trim()}");
            }
        }
    }

    internal TunDevice Open(TunOffloads offloads)
    {
        var options = new TunOptions(Tun, offloads);
        return Namespace is null ? TunDevice.Open(options) : TunDevice.OpenIn(Namespace, options);
    }
}

/// <summary>
/// A NatKit gateway on real links: opens (or attaches to) the inside and outside TUN devices, builds the NAT
/// engine from <see cref="NatConfig"/>, and runs a <see cref="GatewayDataPlane"/> between them until disposed.
/// </summary>
public sealed class Gateway : IAsyncDisposable
{
    private readonly TunDevice _inside;
    private readonly TunDevice _outside;
    private int _disposed;

    private Gateway(TunDevice inside, TunDevice outside, NatEngine engine, GatewayDataPlane dataPlane)
    {
        _inside = inside;
        _outside = outside;
        Engine = engine;
        DataPlane = dataPlane;
    }

    public NatEngine Engine { get; }

    public GatewayDataPlane DataPlane { get; }

    /// <summary>
    /// Answers UDP datagrams from the inside to the gateway's inside address on <paramref name="port"/> (NAT-PMP and
    /// PCP on 5351) with the service <paramref name="create"/> makes from the engine and its clock (milliseconds). The
    /// service is made and runs on the data-plane thread, between batches, so it may use the engine.
    /// </summary>
    public Task ServeInsideUdpAsync(ushort port, Func<NatEngine, long, InsideUdpService> create)
    {
        ArgumentNullException.ThrowIfNull(create);
        var address = Engine.Config.EffectiveInsideAddress;
        return DataPlane.InvokeAsync(() =>
        {
            var services = DataPlane.Pump.InsideServices ??= new InsideUdpServices(address);
            services.Add(port, create(Engine, DataPlane.EngineNow));
            return true;
        });
    }

    /// <summary>
    /// Sends a datagram of the gateway's own from its inside address and <paramref name="sourcePort"/> to the inside
    /// link (an <see cref="InsideUdpSender"/>: NAT-PMP's and PCP's announcements to 224.0.0.1:5350). Call it on the
    /// data-plane thread (<see cref="GatewayDataPlane.InvokeAsync"/>); nothing goes to the outside link.
    /// </summary>
    public void SendInsideUdp(ushort sourcePort, NatEndpoint destination, ReadOnlySpan<byte> payload)
    {
        var services = DataPlane.Pump.InsideServices ??= new InsideUdpServices(Engine.Config.EffectiveInsideAddress);
        var packet = new byte[InsideUdpServices.MaxReply + 64]; // control traffic, ten times after a restart
        var n = services.WriteDatagram(packet, sourcePort, destination, payload);
        if (n > 0)
        {
            DataPlane.Pump.WriteInside(packet.AsSpan(0, n));
        }
    }

    /// <summary>The offloads each side accepted.</summary>
    public (TunOffloads Inside, TunOffloads Outside) Offloads => (_inside.Offloads, _outside.Offloads);

    /// <summary>
    /// A config for a gateway whose links are TUN devices: the MTUs are the TUNs' business (GSO super-packets of up
    /// to 64 KiB pass the engine whole), everything else from the arguments.
    /// </summary>
    public static NatConfig Config(NatPolicy policy, IEnumerable<string> externalAddresses,
        IEnumerable<string> insidePrefixes, string? insideAddress = null) =>
        Config(policy, [.. externalAddresses.Select(Ipv4Address.Parse)], [.. insidePrefixes.Select(Ipv4Prefix.Parse)],
            insideAddress is null ? null : Ipv4Address.Parse(insideAddress));

    /// <summary><see cref="Config(NatPolicy, IEnumerable{string}, IEnumerable{string}, string?)"/> from parsed
    /// addresses.</summary>
    internal static NatConfig Config(NatPolicy policy, IReadOnlyList<Ipv4Address> externalAddresses,
        IReadOnlyList<Ipv4Prefix> insidePrefixes, Ipv4Address? insideAddress) => new()
        {
            Policy = policy,
            ExternalAddresses = externalAddresses,
            InsidePrefixes = insidePrefixes,
            InsideAddress = insideAddress,
            OutsideMtu = 65535,
            InsideMtu = 65535,
        };

    /// <summary>The config for one NatKit hop of a <see cref="GatewayTopology"/>.</summary>
    public static NatConfig Config(GatewayHop hop, NatPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(hop);
        return Config(policy, [hop.ExternalAddress], hop.InsidePrefixes, hop.InsideAddress);
    }

    /// <summary>Opens both links and starts forwarding.</summary>
    /// <param name="inside">The inside link.</param>
    /// <param name="outside">The outside link.</param>
    /// <param name="config">The engine's configuration.</param>
    /// <param name="offloads">Offloads to ask of both TUNs.</param>
    /// <param name="time">The engine's clock.</param>
    /// <param name="options">How the data-plane thread waits and is scheduled (<see cref="DataPlaneOptions.Default"/>).</param>
    public static Gateway Start(TunLink inside, TunLink outside, NatConfig config,
        TunOffloads offloads = TunOffloads.All, TimeProvider? time = null, DataPlaneOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(inside);
        ArgumentNullException.ThrowIfNull(outside);
        var errors = config.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(errors[0]);
        }

        var insideTun = inside.Open(offloads);
        TunDevice? outsideTun = null;
        NatEngine? engine = null;
        try
        {
            outsideTun = outside.Open(offloads);
            engine = new NatEngine(config);
            var plane = new GatewayDataPlane(engine, insideTun, outsideTun, time, options);
            plane.Start();
            return new Gateway(insideTun, outsideTun, engine, plane);
        }
        catch
        {
            engine?.Dispose();
            outsideTun?.Dispose();
            insideTun.Dispose();
            throw;
        }
    }

    /// <summary>Starts the gateway and returns once both links carry packets (see <see cref="TunLink.WaitUntilUpAsync"/>).</summary>
    public static async Task<Gateway> StartAsync(TunLink inside, TunLink outside, NatConfig config,
        TunOffloads offloads = TunOffloads.All, DataPlaneOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(inside);
        ArgumentNullException.ThrowIfNull(outside);
        var gateway = Start(inside, outside, config, offloads, options: options);
        try
        {
            await inside.WaitUntilUpAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            await outside.WaitUntilUpAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            return gateway;
        }
        catch
        {
            await gateway.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Starts a gateway for one hop of a <see cref="GatewayTopology"/> and waits until its links are up.</summary>
    public static Task<Gateway> StartAsync(GatewayHop hop, NatPolicy policy, TunOffloads offloads = TunOffloads.All,
        DataPlaneOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(hop);
        return StartAsync(new TunLink(hop.InsideNamespace, hop.InsideTun), new TunLink(hop.OutsideNamespace, hop.OutsideTun),
            Config(hop, policy), offloads, options, cancellationToken);
    }

    /// <summary>Starts a gateway for one hop of a <see cref="GatewayTopology"/>.</summary>
    public static Gateway Start(GatewayHop hop, NatPolicy policy, TunOffloads offloads = TunOffloads.All,
        DataPlaneOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(hop);
        return Start(new TunLink(hop.InsideNamespace, hop.InsideTun), new TunLink(hop.OutsideNamespace, hop.OutsideTun),
            Config(hop, policy), offloads, options: options);
    }

    /// <summary>Stops the data plane, then closes the links and the engine.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await DataPlane.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            _inside.Dispose();
            _outside.Dispose();
            Engine.Dispose();
        }
    }
}
