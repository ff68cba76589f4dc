#!/usr/bin/perl
#
# report.pl: the table of `make bench` (see test/bench/run).
#
#   report.pl median RAW FIGURE IMPL KEY
#       print the median of KEY over the runs of FIGURE/IMPL in RAW
#   report.pl table RAW META MD JSON
#       compute every figure (medians of the runs) next to its limit and
#       target; write the markdown table to MD and to stdout, and MD's figures
#       with the raw runs to JSON
#
# RAW has one JSON object per line: {"figure", "impl", "run", "result"}, the
# result being what test/bench/driver or pgbench measured.  META is a JSON
# object describing the run (mode, durations, machine).
#
# test/bench/report.pl
#
use strict;
use warnings;
use JSON::PP;

my $json = JSON::PP->new->canonical->pretty;

sub read_raw
{
	my ($file) = @_;
	my @raw;
	open(my $fh, '<', $file) or die "report.pl: $file: $!\n";
	while (my $line = <$fh>)
	{
		next unless $line =~ /\S/;
		push @raw, decode_json($line);
	}
	close $fh;
	return \@raw;
}

sub median
{
	my @v = sort { $a <=> $b } grep { defined } @_;
	return undef unless @v;
	my $n = @v;
	return $n % 2 ? $v[ ($n - 1) / 2 ] : ($v[ $n / 2 - 1 ] + $v[ $n / 2 ]) / 2;
}

sub values_of
{
	my ($raw, $fig, $impl, $key) = @_;
	return map { $_->{result}{$key} }
	  grep { $_->{figure} eq $fig && $_->{impl} eq $impl } @$raw;
}

sub med
{
	my ($raw, $fig, $impl, $key) = @_;
	return median(values_of($raw, $fig, $impl, $key));
}

sub single
{
	my ($raw, $fig) = @_;
	my @r = grep { $_->{figure} eq $fig } @$raw;
	return @r ? $r[-1]{result} : undef;
}

# 12345.6 -> "12,346"
sub num
{
	my ($v, $digits) = @_;
	return 'n/a' unless defined $v;
	$digits //= ($v >= 100 ? 0 : $v >= 10 ? 1 : 2);
	my $s = sprintf("%.${digits}f", $v);
	1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
	return $s;
}

sub mb { my ($bytes) = @_; return defined $bytes ? $bytes / (1024 * 1024) : undef; }

if (@ARGV && $ARGV[0] eq 'median')
{
	die "usage: report.pl median RAW FIGURE IMPL KEY\n" unless @ARGV == 5;
	my $m = med(read_raw($ARGV[1]), @ARGV[ 2 .. 4 ]);
	die "report.pl: no runs of $ARGV[2] $ARGV[3]\n" unless defined $m;
	print "$m\n";
	exit 0;
}

die "usage: report.pl table RAW META MD JSON\n"
  unless @ARGV == 5 && $ARGV[0] eq 'table';
my (undef, $raw_file, $meta_file, $md_file, $json_file) = @ARGV;
my $raw = read_raw($raw_file);
my $meta = do
{
	open(my $fh, '<', $meta_file) or die "report.pl: $meta_file: $!\n";
	local $/;
	decode_json(<$fh>);
};
my $ij = 'immich_jobs';

# the limits, measured in this run
my $L8 = med($raw, 'L8', 'pgbench', 'tps');
my $L16 = med($raw, 'L16', 'pgbench', 'tps');
my $C = med($raw, 'C', 'copy', 'rate');
my %w;
for my $impl ($ij, 'naive')
{
	$w{$impl}{W1} = med($raw, 'W1', $impl, 'rate');
	$w{$impl}{W2} = med($raw, 'W2', $impl, 'tps');
	$w{$impl}{$_} = med($raw, $_, $impl, 'rate') for qw(W3 W4 W5);
}
my $p50 = med($raw, 'W6', $ij, 'p50_ms');
my $p99 = med($raw, 'W6', $ij, 'p99_ms');
my $mem = med($raw, 'memory', $ij, 'peak_delta_kb');
$mem = $mem / 1024 if defined $mem;
my $mem_jsonb = med($raw, 'memory', 'jsonb', 'peak_delta_kb');
$mem_jsonb = $mem_jsonb / 1024 if defined $mem_jsonb;
my $w7 = single($raw, 'W7');
my $w8 = single($raw, 'W8');

# rows: figure, value, unit, reference label, reference value, target
# (op, factor) or undef; "met" is computed
my @rows;

sub row
{
	my (%r) = @_;
	if (defined $r{value} && defined $r{ref} && $r{ref} != 0)
	{
		$r{ratio} = $r{value} / $r{ref};
	}
	if ($r{skipped})
	{
		$r{met} = 'n/a';
	}
	elsif (defined $r{op})
	{
		if (!defined $r{ratio})
		{
			$r{met} = 'n/a';
		}
		elsif ($r{op} eq '>=') { $r{met} = $r{ratio} >= $r{factor} ? 'yes' : 'MISS'; }
		elsif ($r{op} eq '<=') { $r{met} = $r{ratio} <= $r{factor} ? 'yes' : 'MISS'; }
		elsif ($r{op} eq '<') { $r{met} = $r{ratio} < $r{factor} ? 'yes' : 'MISS'; }
	}
	else
	{
		$r{met} = '-';
	}
	push @rows, \%r;
}

row(figure => 'L8: pgbench, 8 clients, one-row UPDATE', value => $L8, unit => 'commits/s');
row(figure => 'L16: pgbench, 16 clients, one-row UPDATE', value => $L16, unit => 'commits/s');
row(figure => 'C: COPY 100,000 job rows', value => $C, unit => 'rows/s');
row(figure => 'W1 bulk enqueue (enqueue_many, 1,000 per call)', value => $w{$ij}{W1},
	unit => 'jobs/s', ref_label => 'C', ref => $C, ref_unit => 'rows/s', op => '>=', factor => 0.8);
row(figure => 'W2 single enqueue, 8 clients', value => $w{$ij}{W2}, unit => 'jobs/s',
	ref_label => 'L8', ref => $L8, ref_unit => 'commits/s', op => '>=', factor => 0.85);
row(figure => 'W3 drain, claim(1) + complete, 16 clients', value => $w{$ij}{W3},
	unit => 'jobs/s', ref_label => 'L16/2', ref => defined $L16 ? $L16 / 2 : undef,
	ref_unit => 'commits/s', op => '>=', factor => 0.85);
row(figure => 'W3 against the naive queue', value => $w{$ij}{W3}, unit => 'jobs/s',
	ref_label => 'naive W3', ref => $w{naive}{W3}, op => '>=', factor => 3);
row(figure => 'W4 drain, claim(16) + complete_many, 16 clients', value => $w{$ij}{W4},
	unit => 'jobs/s', ref_label => 'L16', ref => $L16, ref_unit => 'commits/s',
	op => '>=', factor => 2.5);
row(figure => 'W5 admission: W3 with concurrency 4', value => $w{$ij}{W5}, unit => 'jobs/s',
	ref_label => 'W3', ref => $w{$ij}{W3}, op => '>=', factor => 0.8);
row(figure => 'W6 pickup latency p50 (LISTEN, no polling)', value => $p50, unit => 'ms');
row(figure => 'W6 pickup latency p99 (LISTEN, no polling)', value => $p99, unit => 'ms',
	ref_label => '5 ms', ref => 5, op => '<=', factor => 1);

my $quick = $meta->{mode} eq 'quick';
my $hold_label = '';
if ($w7)
{
	$hold_label = sprintf(' (%d s hold', $w7->{hold_duration});
	$hold_label .= sprintf('; the queue was empty after %.0f s', $w7->{hold_seconds})
	  if $w7->{hold_drained} && $w7->{hold_seconds} < $w7->{hold_duration} - 1;
	$hold_label .= ')';
}
row(figure => "W7 held snapshot: drain rate during the hold$hold_label",
	value => $w7 ? $w7->{hold_rate} : undef, unit => 'jobs/s',
	ref_label => 'W3', ref => $w{$ij}{W3}, op => '>=', factor => 0.8);
row(figure => 'W7 table+index size at the end of the hold',
	value => $w7 ? mb($w7->{size_end_of_hold}) : undef, unit => 'MB',
	ref_label => 'size before', ref => $w7 ? mb($w7->{size_before}) : undef,
	op => '<=', factor => 3);
row(figure => sprintf('W7 size after %d s more of W3, released',
		$w7 ? $w7->{after_duration} : 0),
	value => $w7 ? mb($w7->{size_after}) : undef, unit => 'MB',
	ref_label => 'end of hold', ref => $w7 ? mb($w7->{size_end_of_hold}) : undef,
	op => '<', factor => 1.1);
my $w8_rate = $w8 ? sprintf(' (%s jobs/s)', num($w8->{target_rate})) : '';
row(figure => "W8 sustained at 80% of W3$w8_rate: size at the end",
	value => $w8 ? mb($w8->{size_end}) : undef, unit => 'MB',
	ref_label => 'minute 1', ref => $w8 ? mb($w8->{size_first}) : undef,
	op => '<=', factor => 1.2, skipped => !$w8);
row(figure => 'W8 p99 latency, last minute', value => $w8 ? $w8->{last_p99_ms} : undef,
	unit => 'ms', ref_label => 'minute 1', ref => $w8 ? $w8->{first_p99_ms} : undef,
	op => '<=', factor => 1.5, skipped => !$w8);
row(figure => 'memory: backend peak in one enqueue_many of 100,000 jobs', value => $mem,
	unit => 'MB', ref_label => '64 MB', ref => 64, op => '<=', factor => 1);
row(figure => 'memory reference: the same argument converted to jsonb, nothing else',
	value => $mem_jsonb, unit => 'MB', ref_label => 'enqueue_many', ref => $mem);

# the naive queue through the same workloads, against the same limits
row(figure => 'naive W1 bulk enqueue', value => $w{naive}{W1}, unit => 'jobs/s',
	ref_label => 'C', ref => $C, ref_unit => 'rows/s');
row(figure => 'naive W2 single enqueue', value => $w{naive}{W2}, unit => 'jobs/s',
	ref_label => 'L8', ref => $L8, ref_unit => 'commits/s');
row(figure => 'naive W3 drain, one at a time', value => $w{naive}{W3}, unit => 'jobs/s',
	ref_label => 'L16/2', ref => defined $L16 ? $L16 / 2 : undef, ref_unit => 'commits/s');
row(figure => 'naive W4 drain, batched', value => $w{naive}{W4}, unit => 'jobs/s',
	ref_label => 'L16', ref => $L16, ref_unit => 'commits/s');
row(figure => 'naive W5 admission, concurrency 4', value => $w{naive}{W5}, unit => 'jobs/s',
	ref_label => 'naive W3', ref => $w{naive}{W3});

# ------------------------------------------------------------------ output
my @table;
push @table, '| figure | value | limit/reference | ratio | target | met? |';
push @table, '|---|---|---|---|---|---|';
for my $r (@rows)
{
	my $value =
	  $r->{skipped} ? 'skipped (full run only)'
	  : defined $r->{value} ? num($r->{value}) . " $r->{unit}"
	  : 'n/a';
	my $ref = '';
	if (defined $r->{ref_label})
	{
		$ref = $r->{ref_label};
		$ref .= ' = ' . num($r->{ref}) . ' ' . ($r->{ref_unit} // $r->{unit})
		  if defined $r->{ref} && $r->{ref_label} !~ /^\d/;
	}
	elsif ($r->{figure} =~ /^(L8|L16|C):/)
	{
		$ref = 'machine limit';
	}
	my $ratio = defined $r->{ratio} && !$r->{skipped} ? num($r->{ratio}, 2) : '';
	my $target = '';
	if (defined $r->{op})
	{
		$target = $r->{ref_label} =~ /^\d/
		  ? "$r->{op} $r->{ref_label}"
		  : "$r->{op} " . ($r->{factor} == 1 ? '' : "$r->{factor} x ") . $r->{ref_label};
	}
	push @table, "| $r->{figure} | $value | $ref | $ratio | $target | $r->{met} |";
}

my $d = $meta->{durations};
my @notes;
push @notes,
  sprintf('Mode: **%s**%s. Commit %s, %s, %d CPUs, shared_buffers = 1GB, fsync and synchronous_commit on. '
	  . 'Wall time of `make bench%s`: %d s (started %s).',
	$quick ? 'QUICK' : 'full',
	$quick ? ' (shortened durations, see below)' : '',
	$meta->{commit}, $meta->{server_version}, $meta->{cpus},
	$quick ? ' QUICK=1' : '', $meta->{wall_seconds}, $meta->{started});
push @notes,
  sprintf('Durations used: pgbench runs (L8, L16, W2) %d s each; drains (W3, W4, W5) %s jobs enqueued '
	  . 'with enqueue_many, then 16 clients until drained or %s s; W6 %d jobs %d ms apart; '
	  . 'W7 hold %d s, then %d s of W3 after the release%s; %s.',
	$d->{pgbench_seconds}, num($d->{drain_jobs}), $d->{drain_deadline}, $d->{w6_jobs},
	$d->{w6_interval_ms}, $d->{w7_hold}, $d->{w7_after},
	$quick ? ' (the full run: 300 s and 120 s)' : '',
	$quick ? 'W8 not run (full run only: 600 s)' : sprintf('W8 %d s, windows of %d s', $d->{w8_duration}, $d->{w8_window}));
push @notes,
  'Every figure is the median of 3 runs (the runs interleave the workloads, so that the limits and the '
  . 'figures see the same machine), except W7 and W8, which are one long run each. Raw runs: latest.json.';
push @notes,
  'Before each measured step: VACUUM (ANALYZE) of the job tables and CHECKPOINT, so that every run '
  . 'starts from the same state and with the statistics autovacuum would have gathered.';
push @notes,
  'Drains: each client loops claim, then complete (or complete_many), and claims again at once '
  . 'after an empty claim; W1 is the enqueue of the jobs W3 drains. W6: one consumer sleeps in poll() on '
  . 'its LISTEN socket and claims only when notified; latency = claim returned - enqueue\'s commit '
  . 'returned. W7: table+index = pg_total_relation_size(\'immich_jobs.job\'). Memory: peak RssAnon of '
  . 'the backend, sampled every ms, minus its value before the call; its reference runs '
  . '`SELECT jsonb_array_length($1::jsonb)` on the same argument.';
push @notes,
  'naive = test/bench/naive.sql: the textbook queue (FOR UPDATE SKIP LOCKED claim, the queue\'s row '
  . 'locked FOR UPDATE for admission, DELETE on completion), through the same driver.';

my $md = "# make bench\n\n" . join("\n", @table) . "\n\n"
  . join("\n", map { "- $_" } @notes) . "\n";

open(my $out, '>', $md_file) or die "report.pl: $md_file: $!\n";
print $out $md;
close $out;
print $md;

my @figures = map
{
	my $r = $_;
	{
		figure => $r->{figure},
		value => $r->{skipped} ? undef : $r->{value},
		unit => $r->{unit},
		reference => $r->{ref_label},
		reference_value => $r->{ref},
		ratio => $r->{skipped} ? undef : $r->{ratio},
		target => defined $r->{op} ? "$r->{op} $r->{factor}" : undef,
		met => $r->{met},
	}
} @rows;
open($out, '>', $json_file) or die "report.pl: $json_file: $!\n";
print $out $json->encode({ meta => $meta, figures => \@figures, runs => $raw });
close $out;
