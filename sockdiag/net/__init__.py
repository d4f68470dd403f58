"""What several commands share about the network: name resolution, bind attempts. A layer of its
own below the commands (they may not import each other) and above platform."""
