using System.Globalization;
using System.Net;
using NatKit.Net;
using NatKit.TestSupport;
using NatKit.Turn.Auth;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Interop.Tests;

/// <summary>A standard WebRTC stack (Debian's chromium, headless) uses NatKit's server as its relay: two
/// RTCPeerConnections in one page with iceTransportPolicy 'relay' open a data channel through it.</summary>
public class TurnWebRtcTests
{
    private const string Page = """
        <!doctype html><html><body><script>
        const cfg = { iceServers: [{ urls: 'turn:127.0.0.1:PORT?transport=udp', username: 'USER', credential: 'PASS' }],
                      iceTransportPolicy: 'relay' };
        (async () => {
          try {
            const a = new RTCPeerConnection(cfg), b = new RTCPeerConnection(cfg);
            a.onicecandidate = e => { if (e.candidate) { console.log('CAND ' + e.candidate.candidate); b.addIceCandidate(e.candidate); } };
            b.onicecandidate = e => { if (e.candidate) { console.log('CAND ' + e.candidate.candidate); a.addIceCandidate(e.candidate); } };
            const ch = a.createDataChannel('t');
            b.ondatachannel = e => e.channel.onmessage = async m => {
              const stats = await a.getStats(); const types = [];
              stats.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) {
                const p = stats.get(s.selectedCandidatePairId);
                types.push(stats.get(p.localCandidateId).candidateType + '/' + stats.get(p.remoteCandidateId).candidateType); } });
              console.log('RESULT ok ' + m.data + ' pairs=' + types.join(','));
            };
            ch.onopen = () => ch.send('hello-through-turn');
            await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
            await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
            setTimeout(() => console.log('RESULT timeout ' + a.iceConnectionState), TIMEOUT);
          } catch (e) { console.log('RESULT error ' + e); }
        })();
        </script></body></html>
        """;

    private static async Task<string> RunPageAsync(PeerPolicy policy, int pageTimeoutMs)
    {
        var port = StunPorts.FreePair();
        await using var server = await TurnServer.StartAsync(SystemNetwork.Instance, new TurnServerOptions
        {
            UdpListen = [new IPEndPoint(IPAddress.Loopback, port)],
            SharedSecret = "webrtc-secret",
            Policy = policy,
        });
        var (user, pass) = RestCredentials.Issue("webrtc-secret"u8, "browser", DateTimeOffset.UtcNow.AddHours(1));
        var directory = Directory.CreateTempSubdirectory("natkit-webrtc-").FullName;
        try
        {
            var page = Path.Combine(directory, "page.html");
            await File.WriteAllTextAsync(page, Page.Replace("PORT", port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
                .Replace("USER", user, StringComparison.Ordinal).Replace("PASS", pass, StringComparison.Ordinal)
                .Replace("TIMEOUT", pageTimeoutMs.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));
            await using var browser = ExternalProcess.Start("chromium",
            [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                "--user-data-dir=" + Path.Combine(directory, "profile"), "--enable-logging=stderr", "--v=0",
                "file://" + page,
            ]);
            await browser.WaitForOutputAsync("RESULT", TimeSpan.FromSeconds(90));
            var all = browser.Output + browser.Errors;
            return all[all.IndexOf("\"RESULT", StringComparison.Ordinal)..].Split('\n')[0] + "\n" + all;
        }
        finally
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    [PeerFact("chromium")]
    public async Task Chromium_RelayOnlyDataChannel_OpensThroughNatKit()
    {
        // Both relayed addresses are on loopback, so the relay must be allowed to send there.
        var result = await RunPageAsync(new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]), 30_000);
        var first = result.Split('\n')[0];
        Assert.True(first.Contains("RESULT ok hello-through-turn pairs=relay/relay", StringComparison.Ordinal), result);
        Assert.Contains("typ relay", result, StringComparison.Ordinal);
        Assert.DoesNotContain("typ host", result, StringComparison.Ordinal);
    }

    [PeerFact("chromium")]
    public async Task Chromium_WithTheDefaultPolicy_CannotRelayToLoopback()
    {
        var result = await RunPageAsync(PeerPolicy.Default, 5_000);
        Assert.Contains("RESULT timeout", result.Split('\n')[0], StringComparison.Ordinal);
        Assert.Contains("typ relay", result, StringComparison.Ordinal); // allocations worked; only the peers were refused
    }
}
