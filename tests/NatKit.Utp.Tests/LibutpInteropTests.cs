using System.Globalization;
using System.Net;
using NatKit.Net;
using NatKit.TestSupport;

namespace NatKit.Utp.Tests;

/// <summary>
/// NatKit against libutp, the reference implementation (npm utp-native ships it prebuilt), on loopback. Both
/// directions of connection set-up, bulk data both ways (SHA-256 checked on both sides), and either side closing
/// first. libutp cannot send after it has received a FIN, so the side that closes first is the one whose peer has
/// already sent everything (the node peer's --close after waits for our FIN before sending its own).
/// </summary>
public sealed class LibutpInteropTests
{
    private const int NatKitBytes = 3_000_000;
    private const int NodeBytes = 2_000_000;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [PeerTheory("node")]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(false, false)]
    public async Task Libutp_BulkBothWays_ArrivesIntact_AndCloses(bool natKitConnects, bool libutpClosesFirst)
    {
        var script = InteropNode.RequireScript();
        using var cts = new CancellationTokenSource(Timeout);
        await using var endpoint = await UtpSocket.BindAsync(SystemNetwork.Instance, new IPEndPoint(IPAddress.Loopback, 0));
        var closeMode = libutpClosesFirst ? "first" : "after";
        var common = new[] { "--send", NodeBytes.ToString(CultureInfo.InvariantCulture), "--seed", "2", "--close", closeMode };

        await using var node = natKitConnects
            ? ExternalProcess.Start("node", [script, "--mode", "listen", "--port", "0", .. common], Path.GetDirectoryName(script))
            : ExternalProcess.Start("node", [script, "--mode", "connect", "--port", endpoint.LocalEndPoint.Port.ToString(CultureInfo.InvariantCulture), .. common], Path.GetDirectoryName(script));

        UtpStream stream;
        if (natKitConnects)
        {
            await node.WaitForOutputAsync("listening ", Timeout);
            var port = int.Parse(node.Output.Split("listening ")[1].Split('\n')[0].Trim(), CultureInfo.InvariantCulture);
            stream = await endpoint.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        }
        else
        {
            stream = await endpoint.AcceptAsync(cts.Token);
        }

        await using (stream)
        {
            var sent = TestData.Generate(NatKitBytes, 1);
            var expected = TestData.Generate(NodeBytes, 2);
            var writing = TestData.WriteChunkedAsync(stream, sent, 65536, cts.Token);
            byte[] got;
            if (libutpClosesFirst)
            {
                got = await TestData.ReadToEndAsync(stream, cts.Token);
                await writing;
                stream.ShutdownWrite();
                await stream.FlushAsync(cts.Token);
            }
            else
            {
                got = await ReadExactlyAsync(stream, NodeBytes, cts.Token);
                await writing;
                stream.ShutdownWrite();
                await stream.FlushAsync(cts.Token);
            }

            Assert.Equal(TestData.Sha256(expected), TestData.Sha256(got));
            var exit = await node.WaitForExitAsync(Timeout); // also flushes the output readers
            Assert.True(exit == 0, $"node exited {exit}: {node.Output} {node.Errors}");
            Assert.Contains($"received {NatKitBytes} {TestData.Sha256(sent)}", node.Output, StringComparison.Ordinal);
            Assert.Contains("closed", node.Output, StringComparison.Ordinal);
        }
    }

    private static async Task<byte[]> ReadExactlyAsync(Stream stream, int count, CancellationToken ct)
    {
        var data = new byte[count];
        await stream.ReadExactlyAsync(data, ct);
        return data;
    }
}

/// <summary>Finds tests/interop-node and checks that its node packages are installed.</summary>
internal static class InteropNode
{
    public static string RequireScript()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !Directory.Exists(Path.Combine(dir.FullName, "tests", "interop-node")))
        {
            dir = dir.Parent;
        }

        Assert.True(dir is not null, "tests/interop-node not found above " + AppContext.BaseDirectory);
        var folder = Path.Combine(dir!.FullName, "tests", "interop-node");
        Assert.True(Directory.Exists(Path.Combine(folder, "node_modules", "utp-native")),
            "node_modules/utp-native is missing in tests/interop-node: run scripts/install-test-peers (npm ci)");
        return Path.Combine(folder, "utp-peer.js");
    }
}
