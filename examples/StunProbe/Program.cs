// A STUN server and a NAT behaviour probe, both on loopback: the probe finds "no NAT", since nothing sits between.
// Point NatBehaviorDiscovery at a real RFC 5780 server to learn the NAT you are behind.
using System.Net;
using NatKit.Net;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;

var network = SystemNetwork.Instance;
await using var server = await StunServer.StartAsync(network, new StunServerOptions
{
    Primary = new IPEndPoint(IPAddress.Loopback, 0),     // port 0: any free port
    AlternateAddress = IPAddress.Parse("127.0.0.2"),     // RFC 5780 mode: four UDP sockets
});
Console.WriteLine($"STUN server on {server.UdpEndPoints[0]}");

using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
var behavior = await new NatBehaviorDiscovery(network, server.UdpEndPoints[0]).RunAsync(timeout.Token);
Console.WriteLine(behavior.ToJson());
return behavior.Reachable && behavior.ServerSupportsRfc5780 ? 0 : 1;
