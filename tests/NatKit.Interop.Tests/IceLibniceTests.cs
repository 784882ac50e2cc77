using System.Globalization;
using System.Net;
using System.Text;
using NatKit.Net;
using NatKit.TestSupport;
using NatKit.Traversal.Ice;
using Xunit.Abstractions;

namespace NatKit.Interop.Tests;

/// <summary>
/// NatKit's ICE agent against libnice (Debian's libnice-dev), on loopback: a small C program of ours
/// (Ice/nice-peer.c) built here with gcc and pkg-config runs a libnice agent whose credentials and candidates go
/// over its stdin and stdout. Both sides must finish their connectivity checks, agree on the selected pair, and
/// carry datagrams both ways over it.
/// </summary>
public class IceLibniceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [PeerTheory("gcc", "pkg-config", "/usr/include/nice/agent.h")]
    [InlineData("controlling", "regular")]
    [InlineData("controlling", "aggressive")]
    [InlineData("controlled", "regular")]
    public async Task Libnice_CompletesChecksWithNatKit_AndDatagramsFlowBothWays(string niceRole, string nomination)
    {
        var peerDirectory = Directory.CreateTempSubdirectory("natkit-nice-");
        try
        {
            var program = await BuildNicePeerAsync(peerDirectory.FullName);
            await using var nice = ExternalProcess.Start(program, [niceRole, nomination]);
            await nice.WaitForOutputAsync("gathered", Timeout);
            var (ufrag, password, candidates) = ReadOffer(nice.Output);
            Assert.NotEmpty(candidates);

            var role = niceRole == "controlling" ? IceRole.Controlled : IceRole.Controlling;
            var agent = new IceAgent(role);
            await using var transport = new IceTransport(agent, TimeProvider.System);
            using var socket = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
            var index = transport.AddSocket(socket);
            var local = IceCandidate.Host((IPEndPoint)socket.LocalEndPoint);
            transport.Update(a =>
            {
                Assert.True(a.AddLocalCandidate(local, index));
                a.SetRemoteCredentials(new IceCredentials(ufrag, password));
                foreach (var c in candidates)
                {
                    Assert.True(a.AddRemoteCandidate(c));
                }

                a.SetEndOfCandidates();
                return 0;
            });
            transport.Start();

            await nice.WriteLineAsync("ufrag " + agent.LocalCredentials.Ufrag);
            await nice.WriteLineAsync("pwd " + agent.LocalCredentials.Password);
            await nice.WriteLineAsync("cand a=" + IceCandidateSdp.Format(local));
            await nice.WriteLineAsync("go");
            await nice.WaitForOutputAsync("started 1", Timeout);

            var pair = await WithTimeout(transport.Connected, "NatKit's agent did not select a pair");
            await nice.WaitForOutputAsync("ready ", Timeout);
            var ready = nice.Output.Split('\n').First(l => l.StartsWith("ready ", StringComparison.Ordinal)).Trim();
            // libnice's selected pair is ours mirrored.
            Assert.Equal($"ready {pair.Remote.EndPoint} {pair.Local.EndPoint}", ready);
            Assert.Equal(local.EndPoint, pair.Local.EndPoint);
            Assert.True(pair.Nominated);
            Assert.Equal(role, agent.Role);
            var path = transport.SelectedPath!;
            Assert.Equal(IceCandidateType.Host, path.RemoteType);
            output.WriteLine($"libnice {niceRole} {nomination}: NatKit connected {path.TimeToConnect.TotalMilliseconds:F1} ms " +
                             $"after its first check, RTT {path.Rtt?.TotalMilliseconds:F2} ms, {path.ChecksStarted} checks");

            // NatKit -> libnice, and libnice's echo back.
            var data = transport.DataSocket;
            var buffer = new byte[1500];
            await data.SendToAsync(Encoding.ASCII.GetBytes("hello-from-natkit"), pair.Remote.EndPoint);
            await nice.WaitForOutputAsync("recv hello-from-natkit", Timeout);
            var echo = await WithTimeout(data.ReceiveFromAsync(buffer).AsTask(), "no echo from libnice");
            Assert.Equal("echo:hello-from-natkit", Encoding.ASCII.GetString(buffer, 0, echo.Length));
            Assert.Equal(pair.Remote.EndPoint, echo.RemoteEndPoint);

            // libnice -> NatKit.
            await nice.WriteLineAsync("send hello-from-libnice");
            var got = await WithTimeout(data.ReceiveFromAsync(buffer).AsTask(), "nothing from libnice");
            Assert.Equal("hello-from-libnice", Encoding.ASCII.GetString(buffer, 0, got.Length));

            Assert.DoesNotContain("failed", nice.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("error", nice.Output, StringComparison.Ordinal);
            Assert.Equal(0, agent.Stats.Dropped);
            Assert.True(agent.Stats.RequestsReceived > 0);
            await nice.WriteLineAsync("quit");
            Assert.Equal(0, await nice.WaitForExitAsync(Timeout));
        }
        finally
        {
            peerDirectory.Delete(recursive: true);
        }
    }

    private static async Task<string> BuildNicePeerAsync(string directory)
    {
        var (flagsExit, flags, flagsErrors) = await ExternalProcess.RunAsync("pkg-config", ["--cflags", "--libs", "nice"],
            Timeout);
        Assert.True(flagsExit == 0, "pkg-config finds no libnice (apt-get install libnice-dev): " + flagsErrors);
        var source = Path.Combine(AppContext.BaseDirectory, "Ice", "nice-peer.c");
        var output = Path.Combine(directory, "nice-peer");
        var (exit, stdout, stderr) = await ExternalProcess.RunAsync("gcc",
            ["-O1", "-Wall", "-Werror", "-o", output, source, .. flags.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)],
            Timeout);
        Assert.True(exit == 0, "gcc could not build nice-peer.c: " + stdout + stderr);
        return output;
    }

    private static (string Ufrag, string Password, List<IceCandidate> Candidates) ReadOffer(string output)
    {
        string? ufrag = null, password = null;
        var candidates = new List<IceCandidate>();
        foreach (var raw in output.Split('\n'))
        {
            var line = raw.Trim();
            if (line.StartsWith("ufrag ", StringComparison.Ordinal))
            {
                ufrag = line[6..];
            }
            else if (line.StartsWith("pwd ", StringComparison.Ordinal))
            {
                password = line[4..];
            }
            else if (line.StartsWith("cand ", StringComparison.Ordinal))
            {
                Assert.True(IceCandidateSdp.TryParse(line[5..], out var c, out var error), error);
                candidates.Add(c);
            }
        }

        Assert.NotNull(ufrag);
        Assert.NotNull(password);
        return (ufrag, password, candidates);
    }

    private static async Task<T> WithTimeout<T>(Task<T> task, string what)
    {
        if (await Task.WhenAny(task, Task.Delay(Timeout)) != task)
        {
            throw new TimeoutException(what + " within " + Timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture) + " s");
        }

        return await task;
    }
}
