using System.Net.NetworkInformation;
using NatKit.Linux;
using NatKit.PortMapping.Upnp;

namespace NatKit.Scenarios;

/// <summary>UPnP IGD on <c>natkit gateway</c>'s inside, when its policy offers it (<c>ServeUpnp</c>): the gateway's own
/// host on its inside address (<see cref="GatewayInsideStack"/>, a TUN in the gateway's namespace) runs the
/// <see cref="UpnpServer"/>, whose actions reach the engine on the data-plane thread.</summary>
public static class GatewayUpnp
{
    /// <summary>Starts the IGD; null when the policy does not offer UPnP, or when the gateway's network namespace has
    /// interfaces besides its loopback (the IGD's TUN would give that machine an interface and a route to the inside
    /// prefix it did not ask for: run the gateway in a namespace of its own, as `natkit lab netns` does). Dispose it
    /// before the gateway. <paramref name="warn"/> hears the one sentence that says why UPnP is not served.</summary>
    public static async Task<IAsyncDisposable?> ServeAsync(Gateway gateway, Action<string>? warn = null)
    {
        if (!gateway.Engine.Policy.ServeUpnp)
        {
            return null;
        }

        if (!OwnNamespace())
        {
            warn?.Invoke("UPnP not served: its network namespace has interfaces besides loopback (run the gateway " +
                         "in a namespace of its own)");
            return null;
        }

        var stack = await GatewayInsideStack.StartAsync(gateway, networkNamespace: null).ConfigureAwait(false);
        try
        {
            var igd = await UpnpServer.StartAsync(stack.Network, stack.Address,
                new UpnpControlHandler(gateway.Engine, gateway.DataPlane.EngineNow),
                f => new ValueTask<byte[]>(gateway.DataPlane.InvokeAsync(() => f(gateway.DataPlane.EngineNow))))
                .ConfigureAwait(false);
            return new Running(igd, stack);
        }
        catch
        {
            await stack.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>True when this process's network namespace has nothing but loopback: a namespace made for the gateway,
    /// whose TUNs live elsewhere.</summary>
    private static bool OwnNamespace() =>
        NetworkInterface.GetAllNetworkInterfaces().All(n => n.NetworkInterfaceType == NetworkInterfaceType.Loopback);

    private sealed class Running(UpnpServer igd, GatewayInsideStack stack) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await igd.DisposeAsync().ConfigureAwait(false);
            await stack.DisposeAsync().ConfigureAwait(false);
        }
    }
}
