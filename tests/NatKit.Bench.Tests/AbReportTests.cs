using FsCheck;
using NatKit.Bench.Proxy;

namespace NatKit.Bench.Tests;

/// <summary>`ab`'s text report as `bench proxy` reads it: the figures it needs, and a refusal (never an exception)
/// for anything that is not a finished run.</summary>
public sealed class AbReportTests
{
    // ab 2.3 (Debian 12's apache2-utils), -k through a proxy, as bench proxy runs it; 12 answers were not 2xx
    private const string KeepAliveRun = """
        This is ApacheBench, Version 2.3 <$Revision: 1903618 $>
        Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
        Licensed to The Apache Software Foundation, http://www.apache.org/

        Benchmarking 127.0.0.1 [through 127.0.0.1:40123] (be patient).....done


        Server Software:
        Server Hostname:        127.0.0.1
        Server Port:            38417

        Document Path:          /
        Document Length:        1024 bytes

        Concurrency Level:      32
        Time taken for tests:   0.412 seconds
        Complete requests:      20000
        Failed requests:        3
           (Connect: 0, Receive: 0, Length: 3, Exceptions: 0)
        Non-2xx responses:      12
        Keep-Alive requests:    20000
        Total transferred:      23080000 bytes
        HTML transferred:       20480000 bytes
        Requests per second:    48543.69 [#/sec] (mean)
        Time per request:       0.659 [ms] (mean)
        Time per request:       0.021 [ms] (mean, across all concurrent requests)
        Transfer rate:          54706.33 [Kbytes/sec] received
        """;

    [Fact]
    public void KeepAliveRun_GivesRequestsPerSecond_FailedAndNon2xx()
    {
        Assert.True(AbReport.TryParse(KeepAliveRun, out var r));
        Assert.Equal(new AbReport(48543.69, 3, 12), r);
    }

    [Fact]
    public void CleanRun_WithoutTheNon2xxLine_CountsZero()
    {
        var clean = KeepAliveRun.Replace("Non-2xx responses:      12\n", "", StringComparison.Ordinal)
            .Replace("Failed requests:        3", "Failed requests:        0", StringComparison.Ordinal);
        Assert.True(AbReport.TryParse(clean, out var r));
        Assert.Equal(new AbReport(48543.69, 0, 0), r);
    }

    [Theory]
    [InlineData("")]
    [InlineData("apr_socket_recv: Connection refused (111)\n")]
    [InlineData("Benchmarking 127.0.0.1 (be patient)...apr_pollset_poll: The timeout specified has expired (70007)\nTotal of 1023 requests completed\n")]
    [InlineData("Requests per second:    [#/sec] (mean)\n")]
    [InlineData("Requests per second:    -5 [#/sec] (mean)\n")]
    [InlineData("Time per request:       0.659 [ms] (mean)\nRequests per second is not here\n")]
    [InlineData("Requests per second:    100.5 [#/sec] (mean)\nFailed requests:        99999999999999999999\n")]
    public void NotAFinishedRun_IsRefused(string output) => Assert.False(AbReport.TryParse(output, out _));

    [Fact]
    public void RandomText_NeverThrows() =>
        FsCheck.Fluent.Prop.ForAll<string>(s => AbReport.TryParse(s ?? "", out _) || true).QuickCheckThrowOnFailure();
}
