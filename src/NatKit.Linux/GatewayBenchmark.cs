using System.Globalization;
using System.Text.Json;
using NatKit.Nat;

namespace NatKit.Linux;

/// <summary>Figures for one path (direct, kernel NAT or NatKit) through the three-namespace topology.</summary>
/// <param name="Path">"direct", "kernel" or "natkit".</param>
/// <param name="TcpOneStreamBitsPerSecond">iperf3, one TCP stream, LAN host to WAN host.</param>
/// <param name="TcpFourStreamsBitsPerSecond">iperf3, four TCP streams.</param>
/// <param name="Udp64PacketsPerSecond">iperf3 -u -l 64 -b 0: 64-byte datagrams received per second.</param>
/// <param name="RoundTripMicroseconds">Average ping round trip.</param>
/// <param name="MinRoundTripMicroseconds">Fastest ping round trip: the path's own cost, without the scheduling
/// delays a busy machine adds to the average.</param>
public sealed record GatewayBenchmarkResult(string Path, double TcpOneStreamBitsPerSecond,
    double TcpFourStreamsBitsPerSecond, double Udp64PacketsPerSecond, double RoundTripMicroseconds,
    double MinRoundTripMicroseconds);

/// <summary>Which figures a <see cref="GatewayBenchmark"/> run measures (the rest are reported as NaN).</summary>
[Flags]
public enum GatewayFigures
{
    None = 0,
    TcpOneStream = 1,
    TcpFourStreams = 2,
    Udp64 = 4,
    Ping = 8,
    All = TcpOneStream | TcpFourStreams | Udp64 | Ping,
}

/// <summary>
/// `natkit bench gateway`: the same LAN host - gateway - WAN host topology with a direct link (the latency
/// baseline), kernel nftables <c>masquerade persistent</c>, and a NatKit gateway (in this process), measured one
/// after the other in one run with iperf3 and ping. Everything runs in namespaces made here and removed after.
/// </summary>
public static class GatewayBenchmark
{
    /// <summary>Measures one path. <paramref name="path"/> is "direct", "kernel" or "natkit".</summary>
    public static async Task<GatewayBenchmarkResult> MeasureAsync(string path, TimeSpan duration, NatPolicy policy,
        TunOffloads offloads = TunOffloads.All, DataPlaneOptions? options = null, Action<string>? progress = null,
        GatewayFigures figures = GatewayFigures.All, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        var topology = path switch
        {
            "direct" => await GatewayTopology.CreateDirectAsync(cancellationToken: cancellationToken).ConfigureAwait(false),
            "kernel" => await GatewayTopology.CreateKernelAsync(KernelNatKind.MasqueradePersistent, cancellationToken: cancellationToken).ConfigureAwait(false),
            "natkit" => await GatewayTopology.CreateNatKitAsync(1, cancellationToken: cancellationToken).ConfigureAwait(false),
            _ => throw new ArgumentException($"unknown path '{path}'", nameof(path)),
        };
        await using (topology.ConfigureAwait(false))
        {
            Gateway? gateway = path == "natkit"
                ? await Gateway.StartAsync(topology.Hops[0], policy, offloads, options, cancellationToken).ConfigureAwait(false)
                : null;
            try
            {
                var server = NamespaceProcess.Start(topology.Wan.Name, "iperf3", ["-s", "--forceflush", "-B", GatewayTopology.WanHostAddress]);
                await using (server.ConfigureAwait(false))
                {
                    using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                    {
                        deadline.CancelAfter(TimeSpan.FromSeconds(15));
                        await server.WaitForOutputAsync("Server listening", deadline.Token).ConfigureAwait(false);
                    }

                    (double Min, double Average) rtt = (double.NaN, double.NaN);
                    double one = double.NaN, four = double.NaN, pps = double.NaN;
                    if (figures.HasFlag(GatewayFigures.Ping))
                    {
                        progress?.Invoke($"{path}: ping");
                        rtt = await PingAsync(topology.Lan, cancellationToken).ConfigureAwait(false);
                    }

                    if (figures.HasFlag(GatewayFigures.TcpOneStream))
                    {
                        progress?.Invoke($"{path}: TCP, 1 stream");
                        one = await IperfAsync(topology.Lan, duration, ["-P", "1"], udp: false, cancellationToken).ConfigureAwait(false);
                    }

                    if (figures.HasFlag(GatewayFigures.TcpFourStreams))
                    {
                        progress?.Invoke($"{path}: TCP, 4 streams");
                        four = await IperfAsync(topology.Lan, duration, ["-P", "4"], udp: false, cancellationToken).ConfigureAwait(false);
                    }

                    if (figures.HasFlag(GatewayFigures.Udp64))
                    {
                        progress?.Invoke($"{path}: UDP, 64-byte datagrams");
                        pps = await IperfAsync(topology.Lan, duration, ["-u", "-l", "64", "-b", "0"], udp: true, cancellationToken).ConfigureAwait(false);
                    }

                    return new GatewayBenchmarkResult(path, one, four, pps, rtt.Average, rtt.Min);
                }
            }
            finally
            {
                if (gateway is not null)
                {
                    await gateway.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
    }

    private static async Task<(double Min, double Average)> PingAsync(NetworkNamespace lan, CancellationToken ct)
    {
        // warm-up (mappings, neighbour entries, and long enough for .NET to settle on optimized code), then 200 quick echoes
        _ = await lan.TryExecAsync("ping", ["-c", "200", "-i", "0.002", "-q", GatewayTopology.WanHostAddress], ct).ConfigureAwait(false);
        var output = await lan.ExecAsync("ping", ["-c", "200", "-i", "0.005", "-q", GatewayTopology.WanHostAddress], ct,
            TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        // rtt min/avg/max/mdev = 0.030/0.045/0.120/0.010 ms
        var line = output.Split('\n').First(l => l.Contains("min/avg/max", StringComparison.Ordinal));
        var numbers = line[(line.IndexOf('=', StringComparison.Ordinal) + 1)..].Trim().Split(' ')[0].Split('/');
        return (double.Parse(numbers[0], CultureInfo.InvariantCulture) * 1000,
            double.Parse(numbers[1], CultureInfo.InvariantCulture) * 1000);
    }

    private static async Task<double> IperfAsync(NetworkNamespace lan, TimeSpan duration, string[] options, bool udp,
        CancellationToken ct)
    {
        var seconds = Math.Max(1, (int)duration.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        var output = await lan.ExecAsync("iperf3", ["-c", GatewayTopology.WanHostAddress, "-t", seconds, "-J", .. options],
            ct, duration + TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        using var json = JsonDocument.Parse(output);
        var end = json.RootElement.GetProperty("end");
        if (udp)
        {
            var sum = end.GetProperty("sum");
            var packets = sum.GetProperty("packets").GetDouble() - sum.GetProperty("lost_packets").GetDouble();
            return packets / sum.GetProperty("seconds").GetDouble();
        }

        return end.GetProperty("sum_received").GetProperty("bits_per_second").GetDouble();
    }
}
