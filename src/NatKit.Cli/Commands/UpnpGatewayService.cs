using NatKit.Linux;
using NatKit.PortMapping.Upnp;

namespace NatKit.Cli.Commands;

/// <summary>UPnP IGD on <c>natkit gateway</c>'s inside, when its policy offers it (<c>ServeUpnp</c>): the gateway's own
/// host on its inside address (<see cref="GatewayInsideStack"/>, a TUN in the gateway's namespace) runs the
/// <see cref="UpnpServer"/>, whose actions reach the engine on the data-plane thread.</summary>
internal static class UpnpGatewayService
{
    /// <summary>Starts the IGD; null when the policy does not offer UPnP. Dispose it before the gateway.</summary>
    internal static async Task<IAsyncDisposable?> ServeAsync(Gateway gateway)
    {
        if (!gateway.Engine.Policy.ServeUpnp)
        {
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

    private sealed class Running(UpnpServer igd, GatewayInsideStack stack) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await igd.DisposeAsync().ConfigureAwait(false);
            await stack.DisposeAsync().ConfigureAwait(false);
        }
    }
}
