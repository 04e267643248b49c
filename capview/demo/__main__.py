from capview.demo.runner import main

raise SystemExit(main())
