// Command countersink is an Oort sink plugin that counts what a rule
// produces, in the rule's state, and logs the running totals.
//
// Properties:
//
//	logEvery (int, default 1000): log a line each time the record count
//	    passes a multiple of logEvery; 0 logs only when the sink closes.
//	field (string, optional): also add up this numeric field of every record.
//
// State (shipped to the supervisor with every batch, so the totals survive a
// plugin restart): the counter "records", and the value "sum" when field is
// set. A record whose field is missing or not a number is counted but not
// summed.
package main

import (
	"fmt"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func main() {
	oort.Serve(oort.Plugin{
		Name:    "countersink",
		Version: "1.0.0",
		Sink:    oort.Constructor(func() *counterSink { return &counterSink{} }),
	})
}

type counterSink struct {
	logEvery int64
	field    string
}

func (c *counterSink) Open(ctx oort.StreamContext, props map[string]any) error {
	c.logEvery = 1000
	if v, ok := props["logEvery"]; ok {
		n, isInt := oort.ToInt(v)
		if !isInt || n < 0 {
			return fmt.Errorf("countersink: logEvery must be a non-negative integer, got %v", v)
		}
		c.logEvery = n
	}
	if v, ok := props["field"]; ok {
		s, isString := v.(string)
		if !isString {
			return fmt.Errorf("countersink: field must be a string, got %v", v)
		}
		c.field = s
	}
	n, err := ctx.GetCounter("records")
	if err != nil {
		return err
	}
	ctx.GetLogger().Infof("countersink opened with %d records counted so far", n)
	return nil
}

func (c *counterSink) Collect(ctx oort.StreamContext, records []oort.Record) error {
	before, err := ctx.GetCounter("records")
	if err != nil {
		return err
	}
	if err := ctx.IncrCounter("records", len(records)); err != nil {
		return err
	}
	after := before + len(records)
	if c.field != "" {
		sum, err := c.sum(ctx)
		if err != nil {
			return err
		}
		for _, r := range records {
			if f, ok := oort.ToFloat(r.Fields[c.field]); ok {
				sum += f
			}
		}
		if err := ctx.PutState("sum", sum); err != nil {
			return err
		}
	}
	if c.logEvery > 0 && int64(after)/c.logEvery > int64(before)/c.logEvery {
		c.report(ctx, after)
	}
	return nil
}

func (c *counterSink) sum(ctx oort.StreamContext) (float64, error) {
	v, err := ctx.GetState("sum")
	if err != nil || v == nil {
		return 0, err
	}
	f, _ := oort.ToFloat(v)
	return f, nil
}

func (c *counterSink) report(ctx oort.StreamContext, n int) {
	if c.field == "" {
		ctx.GetLogger().Infof("%d records", n)
		return
	}
	sum, _ := c.sum(ctx)
	ctx.GetLogger().Infof("%d records, %s sums to %v", n, c.field, sum)
}

func (c *counterSink) Close(ctx oort.StreamContext) error {
	n, err := ctx.GetCounter("records")
	if err != nil {
		return err
	}
	c.report(ctx, n)
	return nil
}
