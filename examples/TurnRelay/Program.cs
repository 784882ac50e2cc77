// A TURN client allocates a relayed address on a NatKit TURN server (both on loopback), sends a datagram through
// it to a peer, and receives the peer's answer through the relay.
using System.Net;
using System.Text;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

var network = SystemNetwork.Instance;
await using var server = await TurnServer.StartAsync(network, new TurnServerOptions
{
    UdpListen = [new IPEndPoint(IPAddress.Loopback, 0)],
    Users = new Dictionary<string, string> { ["alice"] = "secret" },
    // peers on loopback are denied by default (no relaying into the server's own host): allowed for this demo
    Policy = new PeerPolicy([PeerRule.Parse("127.0.0.0/8")], []),
});

using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
await using var client = await TurnClient.AllocateAsync(network,
    new TurnClientOptions(server.UdpEndPoints[0], "alice", "secret"), timeout.Token);
Console.WriteLine($"relayed address {client.RelayedEndPoint}");

using var peer = await network.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0), timeout.Token);
await client.CreatePermissionAsync(IPAddress.Loopback, timeout.Token);
await client.SendAsync(Encoding.UTF8.GetBytes("hello through the relay"), peer.LocalEndPoint, timeout.Token);

var buffer = new byte[1500];
var got = await peer.ReceiveFromAsync(buffer, timeout.Token);
Console.WriteLine($"peer got '{Encoding.UTF8.GetString(buffer, 0, got.Length)}' from {got.RemoteEndPoint}");
await peer.SendToAsync(Encoding.UTF8.GetBytes("and back"), got.RemoteEndPoint, timeout.Token);

var back = await client.ReceiveAsync(buffer, timeout.Token);
Console.WriteLine($"client got '{Encoding.UTF8.GetString(buffer, 0, back.Length)}' from {back.Peer}");
return 0;
