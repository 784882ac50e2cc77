using NatKit.Linux;
using NatKit.PortMapping;

namespace NatKit.Scenarios;

/// <summary>
/// NAT-PMP and PCP on the inside of a running <see cref="Gateway"/> (what its policy offers), and the announcements
/// of its start-up to 224.0.0.1:5350 (RFC 6886 section 3.2.1, RFC 6887 section 14.1.3): the handler is made and runs
/// on the data-plane thread, the announcements are written there and leave through the inside link
/// (<see cref="Gateway.SendInsideUdp"/>), waiting on the data plane's clock. What <c>natkit gateway run</c> and the
/// namespace matrix's gateways both use.
/// </summary>
public static class GatewayPortMapping
{
    /// <summary>Serves NAT-PMP/PCP when the policy offers either and starts the announcements; null when it offers
    /// neither. Dispose the announcer before the gateway.</summary>
    public static async Task<PortMappingAnnouncer?> ServeAsync(Gateway gateway)
    {
        ArgumentNullException.ThrowIfNull(gateway);
        var policy = gateway.Engine.Policy;
        if (!policy.ServeNatPmp && !policy.ServePcp)
        {
            return null;
        }

        PortMappingHandler? handler = null;
        await gateway.ServeInsideUdpAsync(PortMappingHandler.Port, (engine, now) => (handler = new PortMappingHandler(engine, now)).Handle)
            .ConfigureAwait(false);
        var dataPlane = gateway.DataPlane;
        var announcer = new PortMappingAnnouncer(handler!, f => new ValueTask<byte[]>(dataPlane.InvokeAsync(() => f(dataPlane.EngineNow))),
            gateway.SendInsideUdp, dataPlane.Time);
        _ = announcer.Start();
        return announcer;
    }
}
