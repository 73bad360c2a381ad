from rounds.cli import main

raise SystemExit(main())
