using System.Net;
using System.Net.Sockets;
using NatKit.Net;

namespace NatKit.PortMapping;

/// <summary>
/// One request and its answer over UDP to a gateway's port 5351, on a fresh socket, retransmitted with doubling waits
/// (RFC 6886 section 3.1, RFC 6887 section 8.1.1). Only datagrams from the gateway's address that
/// <c>accept</c> takes count; others are ignored (RFC 6886 section 3.2: a client checks the source).
/// </summary>
internal static class PortMappingExchange
{
    public static async Task<byte[]?> ExchangeAsync(INetwork network, PortMappingClientOptions options, IPEndPoint gateway,
        ReadOnlyMemory<byte> request, Func<byte[], bool> accept, CancellationToken cancellationToken)
    {
        await using var socket = await network.BindUdpAsync(new IPEndPoint(LocalAddress(network, options, gateway.Address), 0), cancellationToken);
        var buffer = new byte[2048];
        var wait = options.InitialTimeout;
        for (var attempt = 0; attempt < options.Attempts; attempt++, wait *= 2)
        {
            await socket.SendToAsync(request, gateway, cancellationToken);
            using var timeout = new CancellationTokenSource(wait, network.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                while (true)
                {
                    var got = await socket.ReceiveFromAsync(buffer, linked.Token);
                    if (!got.RemoteEndPoint.Address.Equals(gateway.Address)) continue;
                    var answer = buffer.AsSpan(0, got.Length).ToArray();
                    if (accept(answer)) return answer;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // no answer in time: send again
            }
        }

        return null;
    }

    /// <summary>Throws for what no mapping request can carry: a transport other than UDP and TCP, a port outside 0-65535.</summary>
    public static void CheckRequest(Packets.IpProtocol transport, int internalPort, int suggestedExternalPort)
    {
        if (transport is not (Packets.IpProtocol.Udp or Packets.IpProtocol.Tcp)) throw new ArgumentOutOfRangeException(nameof(transport), "NAT-PMP and PCP map UDP or TCP");
        ArgumentOutOfRangeException.ThrowIfNegative(internalPort);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(internalPort, 65535);
        ArgumentOutOfRangeException.ThrowIfNegative(suggestedExternalPort);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(suggestedExternalPort, 65535);
    }

    /// <summary>The address to send from: the configured one, else the local IPv4 address sharing the longest prefix
    /// with the gateway (the one the gateway sees us by).</summary>
    public static IPAddress LocalAddress(INetwork network, PortMappingClientOptions options, IPAddress gateway)
    {
        if (options.LocalAddress is { } configured) return configured;
        IPAddress? best = null;
        var bestBits = -1;
        var g = gateway.GetAddressBytes();
        foreach (var a in network.LocalAddresses)
        {
            if (a.AddressFamily != AddressFamily.InterNetwork || IPAddress.IsLoopback(a) && !IPAddress.IsLoopback(gateway)) continue;
            var b = a.GetAddressBytes();
            var bits = 0;
            for (var i = 0; i < 4 && b[i] == g[i]; i++) bits += 8;
            if (bits > bestBits)
            {
                best = a;
                bestBits = bits;
            }
        }

        return best ?? IPAddress.Any;
    }
}
