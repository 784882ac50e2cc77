using System.Diagnostics.Metrics;
using System.Net;
using NatKit.Net;

namespace NatKit.Utp.Tests;

public sealed class MetricsTests
{
    [Fact]
    public async Task Meter_NatKitUtp_PublishesStableInstruments_ThatCountTraffic()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var server = await UtpSocket.BindAsync(SystemNetwork.Instance, new IPEndPoint(IPAddress.Loopback, 0));
        await using var client = await UtpSocket.BindAsync(SystemNetwork.Instance, new IPEndPoint(IPAddress.Loopback, 0));
        var accept = server.AcceptAsync(cts.Token);
        await using var a = await client.ConnectAsync(server.LocalEndPoint, cts.Token);
        await using var b = await accept;
        await a.WriteAsync(new byte[50_000], cts.Token);
        await a.FlushAsync(cts.Token);

        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "NatKit.Utp")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            lock (seen)
            {
                seen[instrument.Name] = Math.Max(seen.GetValueOrDefault(instrument.Name), value);
            }
        });
        listener.SetMeasurementEventCallback<int>((instrument, value, _, _) =>
        {
            lock (seen)
            {
                seen[instrument.Name] = Math.Max(seen.GetValueOrDefault(instrument.Name), value);
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        foreach (var name in new[]
                 {
                     "natkit.utp.datagrams.sent", "natkit.utp.datagrams.received", "natkit.utp.datagrams.other",
                     "natkit.utp.retransmissions", "natkit.utp.timeouts", "natkit.utp.connections.opened",
                     "natkit.utp.connections.failed", "natkit.utp.resets.sent", "natkit.utp.connections.active",
                 })
        {
            Assert.True(seen.ContainsKey(name), name + " is published");
        }

        Assert.True(seen["natkit.utp.datagrams.sent"] >= 50_000 / 1380, "data packets are counted");
        Assert.True(seen["natkit.utp.connections.opened"] >= 1);
        Assert.True(seen["natkit.utp.connections.active"] >= 1);
    }
}
