from bench.cli.app import main

raise SystemExit(main())
